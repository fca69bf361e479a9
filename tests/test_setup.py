"""A newcomer's first commands: where the shared data is looked for (and what a missing set's
error says), install instructions that hold, `--help` that answers fast and shows the defaults a
run would really get, and a tiny first-look run that shows learning."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from selfsup.cli import main
from selfsup.data import sources
from selfsup.data.catalog import BUILTIN_TASKS, builtin_task
from selfsup.data.images import ImageDataConfig, load_images
from selfsup.data.sources import SHARED_SETS, shared_data_dir
from selfsup.errors import UserError

REPO = Path(__file__).resolve().parents[1]
# built-in tasks that read nothing from the shared data folder
PACKAGED_TASKS = {"sentiment", "seg", "pos", "ner"}


# ---------------------------------------------------------------- the shared data folder
def _fake_layout(tmp_path: Path, monkeypatch, checkout: bool) -> Path:
    """selfsup's sources.py placed at <tmp>/top/ws/repo/selfsup/data/sources.py, with a
    `shared/data` two levels above the repository (what the old upward walk picked up)."""
    repo = tmp_path / "top" / "ws" / "repo"
    (repo / "selfsup" / "data").mkdir(parents=True)
    if checkout:
        (repo / "pyproject.toml").write_text("[project]\nname = 'selfsup'\n")
    (tmp_path / "top" / "shared" / "data").mkdir(parents=True)
    monkeypatch.setattr(sources, "__file__", str(repo / "selfsup" / "data" / "sources.py"))
    monkeypatch.delenv("SELFSUP_DATA_DIR", raising=False)
    return repo


def test_shared_data_is_beside_the_checkout_only(tmp_path, monkeypatch):
    repo = _fake_layout(tmp_path, monkeypatch, checkout=True)
    assert shared_data_dir() is None  # an unrelated shared/data higher up is not taken
    assert f"{repo.parent / 'shared' / 'data'} does not exist" in sources.shared_data_searched()
    (repo.parent / "shared" / "data").mkdir(parents=True)
    assert shared_data_dir() == repo.parent / "shared" / "data"
    monkeypatch.setenv("SELFSUP_DATA_DIR", str(tmp_path))
    assert shared_data_dir() == tmp_path  # the variable wins


def test_an_installed_package_reads_only_the_variable(tmp_path, monkeypatch):
    site = _fake_layout(tmp_path, monkeypatch, checkout=False)  # no pyproject.toml: site-packages
    (site.parent / "shared" / "data").mkdir(parents=True)
    assert shared_data_dir() is None
    assert "SELFSUP_DATA_DIR is not set" in sources.shared_data_searched()
    monkeypatch.setenv("SELFSUP_DATA_DIR", str(tmp_path))
    assert shared_data_dir() == tmp_path


def _assert_says_where_it_comes_from(message: str, folder: str) -> None:
    assert "\n" not in message
    assert f"{folder}/" in message and "SELFSUP_DATA_DIR" in message
    assert SHARED_SETS[folder] in message
    assert "https://" in SHARED_SETS[folder]
    assert re.search(r"licen[cs]e|CC BY|MIT|public domain|research use", SHARED_SETS[folder])


@pytest.mark.parametrize("task", sorted(set(BUILTIN_TASKS) - PACKAGED_TASKS))
def test_a_missing_task_set_says_where_it_comes_from(task, tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_DATA_DIR", str(tmp_path))  # an empty data folder
    with pytest.raises(UserError) as error:
        builtin_task(task)
    folder = re.search(r"shared data set ([\w.-]+)/", str(error.value)).group(1)
    _assert_says_where_it_comes_from(str(error.value), folder)


@pytest.mark.parametrize("dataset,folder", [("mnist-5k", "mnist-5k"), ("cifar10", "cifar10-jpg")])
def test_a_missing_image_set_says_where_it_comes_from(dataset, folder, tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_DATA_DIR", str(tmp_path))
    with pytest.raises(UserError) as error:
        load_images(ImageDataConfig(dataset=dataset))
    _assert_says_where_it_comes_from(str(error.value), folder)
    monkeypatch.setenv("SELFSUP_DATA_DIR", str(tmp_path / "absent"))
    with pytest.raises(UserError) as error:
        load_images(ImageDataConfig(dataset=dataset))
    _assert_says_where_it_comes_from(str(error.value), folder)


def test_a_missing_corpus_is_one_line_through_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SELFSUP_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "data").mkdir()
    argv = ["pretrain", "--preset", "gpt-tiny", "--corpus", "tinyshakespeare"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("selfsup: error: corpus 'tinyshakespeare'")
    _assert_says_where_it_comes_from(err.strip(), "tinyshakespeare")


def test_readme_rows_that_need_shared_data_say_so():
    """Every "I want to..." row whose command reads a set of the shared data folder says so."""
    rows = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| ")]
    reads_shared = [
        "--task drcd",
        "gpt-small",
        "tinyshakespeare",
        "mnist",
        "cifar-cpu",
        "vocab.txt",
    ]
    marked = [row for row in rows if any(command in row for command in reads_shared)]
    assert len(marked) >= 4
    for row in marked:
        assert "shared/data" in row, row


# ---------------------------------------------------------------- install: README, CI, pyproject
SETUP = 'pip install torch==2.13.0 && pip install -e ".[test,hf,serve]"'


def _two_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)[:2]


def test_readme_two_commands_are_one_command_each():
    """Clone + set-up + demo, and clone + set-up + tests: each block is one shell command (every
    line but the last ends with &&), valid bash, with the same set-up as CI."""
    demo, tests = _two_commands()
    for block, last in ((demo, "selfsup demo --out runs/demo"), (tests, "python -m pytest")):
        lines = block.strip().splitlines()
        assert lines[0].startswith("git clone URL selfsup && cd selfsup")
        assert all(line.rstrip().endswith("&&") for line in lines[:-1]), lines
        assert last in lines[-1] and SETUP in block
        check = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
    assert tests.strip().splitlines()[-1] == "OMP_NUM_THREADS=1 python -m pytest"


def test_ci_installs_and_tests_as_the_readme_says():
    ci = (REPO / ".ci" / "run").read_text()
    assert "pip install -q torch==2.13.0" in ci and 'pip install -q -e ".[test,hf,serve]"' in ci
    assert "export OMP_NUM_THREADS=1" in ci and "python -m pytest" in ci
    readme = (REPO / "README.md").read_text()
    assert "--index-url https://download.pytorch.org/whl/cpu" in readme  # the CPU-only build
    assert "CUDA build" in readme


def test_pyproject_names_no_file_that_does_not_exist():
    text = (REPO / "pyproject.toml").read_text()
    for name in re.findall(r"[\w./-]+\.(?:txt|cfg|toml|in)\b", text):
        if "/" in name or name.endswith((".txt", ".cfg", ".in")):
            assert (REPO / name).exists() or name.startswith("."), name


# ---------------------------------------------------------------- --help: fast, and true
def _modules_after(argv: list[str]) -> tuple[int, set[str], str]:
    """Exit code, heavy modules loaded and stderr of `selfsup ARGV` in a fresh interpreter."""
    code = (
        "import sys\nfrom selfsup.cli import main\ntry:\n    code = main(sys.argv[1:])\n"
        "except SystemExit as e:\n    code = e.code\n"
        "import json\nheavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy') "
        "or m.startswith('selfsup.recipes')]\nprint(json.dumps(heavy), file=sys.stderr)\n"
        "sys.exit(code)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120
    )
    *lines, modules = proc.stderr.strip().splitlines()
    return proc.returncode, set(json.loads(modules)), "\n".join(lines)


@pytest.mark.parametrize("argv", [["--help"], ["--bogus"], [], ["fill-mask", "--help"]])
def test_top_level_help_and_bad_flags_import_neither_torch_nor_recipes(argv):
    start = time.perf_counter()
    code, heavy, err = _modules_after(argv)
    assert code in (0, 2) and not heavy, heavy
    assert time.perf_counter() - start < 20  # a generous bound; the import check is the test
    if argv == ["--bogus"]:
        assert "unrecognized arguments: --bogus" in err


def test_the_command_list_names_every_command_and_architecture(capsys):
    from selfsup.cli import COMMAND_HELP
    from selfsup.recipes import pretraining_archs

    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for name, line in COMMAND_HELP.items():
        assert f"{name} {line}" in out
    for arch in pretraining_archs():
        assert arch in COMMAND_HELP["pretrain"]


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())  # argparse's wrapping undone


@pytest.mark.parametrize(
    "argv,flag,preset",
    [
        (["pretrain"], "--train.steps", "tiny"),
        (["pretrain", "--preset", "small"], "--train.steps", "small"),
        (["pretrain", "--preset=small"], "--model.hidden_size", "small"),
        (["pretrain", "--preset", "gpt-small"], "--data.corpus", "gpt-small"),
        (["pretrain", "--preset", "gpt-small"], "--arch", "gpt-small"),  # gpt, not bert
        (["pretrain", "--arch", "gpt"], "--arch", "tiny"),  # gpt, as the run gets
        (["pretrain", "--arch", "simclr"], "--train.batch_size", "tiny"),
        (["pretrain", "--arch", "byol", "--preset", "digits"], "--train.steps", "digits"),
        (["finetune"], "--train.lr", "small"),
        (["finetune", "--preset", "tiny"], "--train.steps", "tiny"),
    ],
)
def test_help_shows_the_chosen_presets_values(argv, flag, preset, capsys):
    from selfsup.config import get_value, shown_value
    from selfsup.recipes import RECIPES

    arch = argv[argv.index("--arch") + 1] if "--arch" in argv else "bert"
    recipe = RECIPES["finetune" if argv[0] == "finetune" else arch]
    expected = recipe.presets[preset]()
    if "--arch" in argv:  # what the run gets: --arch overrides the preset's own
        expected.arch = arch
    value = shown_value(get_value(expected, flag[2:]))
    text = _help(argv, capsys)
    assert re.search(rf"{re.escape(flag)} V .*?default: {re.escape(value)}\)", text), (flag, value)
    assert f"value of --preset {preset}" in text and "--preset NAME changes them" in text


def test_preset_choices_follow_the_arch(capsys):
    from selfsup.recipes import RECIPES

    for arch in ("bert", "simclr", "byol"):
        text = _help(["pretrain", "--arch", arch], capsys)
        assert "--preset {" + ",".join(RECIPES[arch].presets) + "}" in text
    assert "--preset {tiny,digits,mnist,cifar-cpu,cifar}" in _help(
        ["pretrain", "--arch", "byol"], capsys
    )


@pytest.mark.parametrize("argv", [["pretrain"], ["pretrain", "--arch", "simclr"], ["finetune"]])
def test_no_flag_is_described_as_itself(argv):
    """A shortcut named as its key (--objectives, --init) is the key's only flag, so its help
    must not say "same as" itself."""
    from selfsup.cli import build_parser

    parser = build_parser(argv)
    (command,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for action in command.choices[argv[0]]._actions:
        for flag in action.option_strings:
            assert f"same as {flag})" not in (action.help or ""), flag
            assert f"same as {flag};" not in (action.help or ""), flag


# ---------------------------------------------------------------- the first look learns
@pytest.mark.slow
def test_the_tiny_preset_learns_past_the_unigram_guess(tmp_path, capsys):
    """`selfsup pretrain --preset tiny --out runs/tiny`, the README's first look, on People's
    Daily: held-out MLM accuracy clearly above always guessing the most frequent character
    (about 30 s on 2 cores, most of it tokenizing the corpus)."""
    assert main(["pretrain", "--preset", "tiny", "--out", str(tmp_path / "tiny")]) == 0
    out = capsys.readouterr().out
    final = json.loads((tmp_path / "tiny" / "final_metrics.json").read_text())
    assert final["eval_mlm_accuracy"] > 1.3 * final["eval_mlm_unigram_accuracy"], final
    assert "eval_mlm_unigram_accuracy" in out
