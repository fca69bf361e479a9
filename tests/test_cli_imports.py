"""`selfsup COMMAND --help` and a bad flag build only that command's parser, from torch-free config
classes and presets: no torch, numpy, transformers, tokenizers or starlette is imported.

Each case runs in a fresh interpreter (imports are per process). A failure names the heavy
module and the selfsup import chain that pulled it in, recorded by an import hook."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from selfsup.cli import COMMAND_HELP
from selfsup.experiments.registry import EXPERIMENTS
from selfsup.recipes import pretraining_archs

HEAVY = ("torch", "numpy", "transformers", "tokenizers", "starlette")

# runs `selfsup ARGV` (SystemExit caught), then prints on stderr's last line a JSON object: the
# exit code and, for each heavy package imported, the selfsup frames that imported it first
PROBE = f"""
import json, sys, traceback

HEAVY = {HEAVY!r}
pulled_in = {{}}

class Recorder:
    def find_spec(self, name, path=None, target=None):
        root = name.split(".")[0]
        if root in HEAVY and root not in pulled_in:
            pulled_in[root] = [
                f"{{frame.filename.split('selfsup/')[-1]}}:{{frame.lineno}}"
                for frame in traceback.extract_stack()
                if "/selfsup/" in frame.filename
            ]
        return None  # the usual finders import it

sys.meta_path.insert(0, Recorder())
from selfsup.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print(json.dumps({{"code": code, "pulled_in": pulled_in}}), file=sys.stderr)
"""


def _run(argv: list[str]) -> tuple[int, dict[str, list[str]], str, str]:
    """Exit code, {heavy package: the selfsup frames that imported it}, stdout and stderr (the
    probe's own line removed) of `selfsup ARGV` in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120
    )
    *lines, last = proc.stderr.strip().splitlines()
    result = json.loads(last)
    return result["code"], result["pulled_in"], proc.stdout, "\n".join(lines)


def _assert_light(argv: list[str], pulled_in: dict[str, list[str]]) -> None:
    assert not pulled_in, f"selfsup {' '.join(argv)} imported " + "; ".join(
        f"{name} via {' <- '.join(reversed(chain))}" for name, chain in pulled_in.items()
    )


HELP_CASES = [
    *([name, "--help"] for name in COMMAND_HELP),
    *(["pretrain", "--arch", arch, "--help"] for arch in pretraining_archs()),
    ["finetune", "--preset", "tiny", "--help"],
    *(["experiment", name, "--help"] for name in EXPERIMENTS),
]


@pytest.mark.parametrize("argv", HELP_CASES, ids=" ".join)
def test_help_of_every_command_imports_nothing_heavy(argv):
    code, pulled_in, out, err = _run(argv)
    assert code == 0, err
    assert "usage: " in out and not err
    _assert_light(argv, pulled_in)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["pretrain", "--bogus"], "the following arguments are required: --out"),
        (["pretrain", "--out", "runs/x", "--bogus"], "unrecognized arguments: --bogus"),
        (["pretrain", "--arch", "simclr", "--out", "x", "--bogus"], "unrecognized arguments"),
        (["finetune", "--out", "runs/x", "--bogus"], "unrecognized arguments: --bogus"),
        (["pretrain", "--arch", "nope", "--out", "x"], "--arch nope: expected one of bert"),
        (["demo", "--seeds", "many"], "argument --seeds: invalid int value: 'many'"),
        (["icl", "RUN", "--bogus"], "unrecognized arguments: --bogus"),
        (["experiment", "objectives", "--bogus"], "unrecognized arguments: --bogus"),
        (["experiment", "ssl-few-labels", "--seeds", "x"], "invalid int value: 'x'"),
    ],
)
def test_a_bad_flag_is_one_line_and_imports_nothing_heavy(argv, message):
    code, pulled_in, _, err = _run(argv)
    assert code == 2
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err
    _assert_light(argv, pulled_in)


def test_the_arch_of_a_saved_config_is_read_without_torch(tmp_path):
    """--config FILE and --resume read the arch (whose flags --help lists) from a config.json."""
    (tmp_path / "config.json").write_text(json.dumps({"arch": "byol"}))
    for argv in (
        ["pretrain", "--config", str(tmp_path / "config.json"), "--help"],
        ["pretrain", "--out", str(tmp_path), "--resume", "--help"],
    ):
        code, pulled_in, out, _ = _run(argv)
        assert code == 0 and "--byol.tau_base" in out
        _assert_light(argv, pulled_in)


def test_every_function_a_built_in_recipe_names_exists():
    """The registry names its recipes' functions without importing them (`LazyFunction`): each
    must be a function of its module, so a renamed one fails here, not at the end of a run."""
    import importlib

    from selfsup.recipes import RECIPES
    from selfsup.recipes.recipe import LazyFunction

    for recipe in RECIPES.values():
        for role in ("setup", "data", "build_model", "load", "finish"):
            function = getattr(recipe, role)
            if role == "finish" and not isinstance(function, LazyFunction):
                continue  # the default: metrics unchanged
            assert isinstance(function, LazyFunction), (recipe.name, role)
            assert callable(getattr(importlib.import_module(function.module), function.name))
