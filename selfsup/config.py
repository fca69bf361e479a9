"""Typed configs: dataclasses with tiny defaults, `key=value` overrides, save and load.

Every field carries a one-line help text in its metadata (`field(..., metadata={"help": ...})`); the
CLI turns each field into a `--section.name` flag from it, so `--help` documents every option and no
option exists that the config does not know. Overrides are checked: an unknown key or a value of the
wrong type is a `UserError` naming the key and what was expected.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any

from selfsup.errors import UserError
from selfsup.io import atomic_write_json


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with a help text (shown by `--help`)."""
    if isinstance(default, (list, dict, set)) or dataclasses.is_dataclass(default):
        return dataclasses.field(
            default_factory=lambda: copy.deepcopy(default), metadata={"help": help}, **kwargs
        )
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_config(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(the non-None member of an Optional, whether None is allowed)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return members[0], True
    return tp, False


def parse_value(text: str, tp: Any, key: str) -> Any:
    """Parse a command-line string into the field's type, or raise a UserError naming the key."""
    base, optional = _base_type(tp)
    if optional and text.lower() in ("none", "null", ""):
        return None
    try:
        if base is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if base is int:
            number = float(text) if any(c in text for c in ".eE") else int(text)  # 1e4 is fine
            if number != int(number):
                raise ValueError
            return int(number)
        if base is float:
            return float(text)
        if base is str:
            return text
        if typing.get_origin(base) is list:
            (item,) = typing.get_args(base)
            return [parse_value(x.strip(), item, key) for x in text.split(",") if x.strip()]
        if typing.get_origin(base) is typing.Literal:
            choices = typing.get_args(base)
            if text not in choices:
                raise ValueError
            return text
    except ValueError:
        pass
    else:
        raise UserError(f"config key {key!r}: unsupported type {tp}")
    raise UserError(f"config key {key!r}: cannot read {text!r} as {_type_name(tp)}")


def _type_name(tp: Any, in_json: bool = False) -> str:
    """How --help and error messages name a field's type (`in_json`: as a JSON value)."""
    base, optional = _base_type(tp)
    if typing.get_origin(base) is typing.Literal:
        name = "one of " + "|".join(map(str, typing.get_args(base)))
    elif typing.get_origin(base) is list:
        item = typing.get_args(base)[0].__name__
        name = f"a list of {item}s" if in_json else f"comma-separated {item}s"
    else:
        name = getattr(base, "__name__", str(base))
    return name + ((" or null" if in_json else " or none") if optional else "")


def check_json_value(value: Any, tp: Any, key: str, source: str) -> Any:
    """A value read from a JSON config, checked against the field's type (an int is a float too;
    an integral number such as 1e4 is an int; true is not a number), or a UserError naming the
    file, the dotted key and what was expected."""
    base, optional = _base_type(tp)
    if value is None and optional:
        return None
    origin = typing.get_origin(base)
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(base)
        return [check_json_value(v, item, f"{key}[{i}]", source) for i, v in enumerate(value)]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is typing.Literal and value in typing.get_args(base) and isinstance(value, str):
        return value
    if base is bool and isinstance(value, bool):
        return value
    if base is int and number and float(value).is_integer():
        return int(value)
    if base is float and number:
        return float(value)
    if base is str and isinstance(value, str):
        return value
    raise UserError(
        f"{source}: {key} must be {_type_name(tp, in_json=True)}, got {json.dumps(value)}"
    )


def iter_fields(
    cfg_cls: type, prefix: str = ""
) -> typing.Iterator[tuple[str, Any, dataclasses.Field]]:
    """Yield (dotted key, type, field) for every leaf field of a nested config class."""
    hints = _field_types(cfg_cls)
    for f in dataclasses.fields(cfg_cls):
        tp = hints[f.name]
        key = f"{prefix}{f.name}"
        if _is_config(tp):
            yield from iter_fields(tp, key + ".")
        else:
            yield key, tp, f


def set_value(cfg: Any, key: str, value: Any) -> None:
    """Set a dotted key on a nested config; raise UserError for a key that does not exist."""
    *path, leaf = key.split(".")
    target = cfg
    for part in path:
        if not dataclasses.is_dataclass(target) or not hasattr(target, part):
            raise UserError(f"unknown config key {key!r}; see --help for the list of keys")
        target = getattr(target, part)
    names = (
        {f.name for f in dataclasses.fields(target)} if dataclasses.is_dataclass(target) else set()
    )
    if leaf not in names or _is_config(_field_types(type(target))[leaf]):
        raise UserError(f"unknown config key {key!r}; see --help for the list of keys")
    setattr(target, leaf, value)


def apply_overrides(cfg: Any, overrides: list[str]) -> Any:
    """Apply `section.key=value` strings (checked names and types) to a config in place."""
    types_by_key = {k: tp for k, tp, _ in iter_fields(type(cfg))}
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r}: expected key=value, e.g. model.num_layers=4")
        key, text = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if key not in types_by_key:
            raise UserError(f"unknown config key {key!r}; see --help for the list of keys")
        set_value(cfg, key, parse_value(text.strip(), types_by_key[key], key))
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cfg_cls: type, data: dict[str, Any], source: str = "config", prefix: str = "") -> Any:
    """Build a config from a (possibly partial) dict read from `source`; an unknown key or a value
    of the wrong type is a UserError naming the source and the dotted key (`prefix` + name)."""
    if not isinstance(data, dict):
        where = f"{prefix.rstrip('.')} must be" if prefix else "expected"
        raise UserError(
            f"{source}: {where} a JSON object of {cfg_cls.__name__} keys, got {json.dumps(data)}"
        )
    hints = _field_types(cfg_cls)
    names = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        keys = ", ".join(prefix + k for k in unknown)
        raise UserError(f"{source}: unknown key(s) {keys} in {cfg_cls.__name__}")
    kwargs = {}
    for name, value in data.items():
        tp, key = hints[name], prefix + name
        if _is_config(tp):
            kwargs[name] = from_dict(tp, value, source, key + ".")
        else:
            kwargs[name] = check_json_value(value, tp, key, source)
    return cfg_cls(**kwargs)


def save_config(cfg: Any, path: str | Path) -> None:
    atomic_write_json(path, to_dict(cfg))


# What a resumed run may change: how long it runs and how often it reports or saves, not what a
# step computes (a longer train.steps stretches the learning-rate schedule from the resume point).
# How the step is spread over processes (their number is no config key; DDP or FSDP; the
# collective timeout) changes no result beyond float rounding: a run resumes on any of them.
RESUMABLE_CHANGES = frozenset(
    f"train.{key}"
    for key in (
        "steps",
        "threads",
        "progress",
        "device",
        "eval_every",
        "eval_batches",
        "log_every",
        "checkpoint_every",
        "checkpoint_seconds",
        "keep_checkpoints",
        "parallel",
        "dist_timeout_s",
    )
)


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(cfg: Any, path: str | Path, ignore: tuple[str, ...] = ()) -> list[str]:
    """Every key whose value in `cfg` differs from the config saved at `path`, as
    "key: saved -> wanted" (none when nothing is saved). Keys starting with one of `ignore` are
    not compared (e.g. "model." for sizes a run's setup fills in), nor keys the saved file lacks
    (options added since)."""
    path = Path(path)
    if not path.exists():
        return []
    saved = _flat(json.loads(path.read_text(encoding="utf-8")))
    wanted = _flat(json.loads(json.dumps(to_dict(cfg))))  # as it would be saved
    return [
        f"{key}: {saved[key]!r} -> {wanted.get(key)!r}"
        for key in sorted(saved)
        if saved[key] != wanted.get(key) and not key.startswith(ignore)
    ]


def run_config_changes(cfg: Any, path: str | Path) -> list[str]:
    """What `cfg` changes in the run config saved at `path`, beyond RESUMABLE_CHANGES, as
    "key: saved -> wanted" (none when nothing is saved)."""
    return [
        change
        for change in config_differences(cfg, path)
        if change.split(":", 1)[0] not in RESUMABLE_CHANGES
    ]


def save_run_config(cfg: Any, path: str | Path, resume: bool) -> None:
    """Save a run's resolved config; when resuming, first check it against the saved one, so a
    checkpoint is never continued under settings it was not trained with (a silent mix)."""
    path = Path(path)
    if resume:
        changed = run_config_changes(cfg, path)
        if changed:
            raise UserError(
                f"{path.parent}: cannot resume with other settings ({'; '.join(changed)}); "
                "use the run's own settings or another output folder"
            )
    save_config(cfg, path)


def load_config(cfg_cls: type, path: str | Path) -> Any:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
    return from_dict(cfg_cls, data, str(path))


def config_arch(path: str | Path) -> str | None:
    """The arch a saved config.json names (None when unreadable): lets the CLI pick the config
    class of `--config FILE` or of a resumed `--out` before it parses the other flags."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")).get("arch")
    except (OSError, ValueError, AttributeError):
        return None


def get_value(cfg: Any, key: str) -> Any:
    """The value at a dotted key of a nested config (`get_value(cfg, "train.lr")`)."""
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def shown_value(value: Any) -> str:
    """A config value as a user types it: lists comma-separated ("mlm,sop"), "(empty)" for []."""
    if isinstance(value, list):
        return ",".join(map(str, value)) or "(empty)"
    return str(value)


def field_help(f: dataclasses.Field, tp: Any, default: Any = dataclasses.MISSING) -> str:
    """A field's --help text: its help, type and default; `default` (e.g. the value a preset
    sets) replaces the class's own. Lists are shown as they are typed: comma-separated."""
    if default is dataclasses.MISSING:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    return f"{f.metadata.get('help', '')} ({_type_name(tp)}; default: {shown_value(default)})"


def parse_flat_settings(cls: type, argv: list[str] | None, description: str | None) -> Any:
    """A flat dataclass of plain settings (the benchmarks') from `--field-name VALUE` flags, one
    per field, typed by the default; a bool becomes --name / --no-name."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = cls()
    for f in dataclasses.fields(cls):
        default = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            parser.add_argument(
                flag, type=type(default), default=default, help=f"default {default}"
            )
    return cls(**vars(parser.parse_args(argv)))
