"""`selfsup experiment`: the list, the delegation to each experiment's own command line, and the
quick sizes of the experiments (the machinery works and every arm really trains; not the result).
"""

from __future__ import annotations

import importlib
import inspect
import json
from dataclasses import replace
from pathlib import Path

import pytest

from selfsup.cli import main
from selfsup.config import apply_overrides
from selfsup.data.sources import shared_data_dir
from selfsup.errors import UserError
from selfsup.experiments import cross_lingual, dna, objectives
from selfsup.experiments.registry import EXPERIMENTS
from selfsup.recipes import pretrain
from selfsup.recipes.text import preset_tiny


def test_list_names_every_experiment_and_its_cost(capsys):
    assert main(["experiment", "list"]) == 0
    out = capsys.readouterr().out
    for name, experiment in EXPERIMENTS.items():
        assert name in out and experiment.claim in out
    assert out.count("CPU preset about") == len(EXPERIMENTS)


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_registered_experiment_has_a_command_line(name):
    module = importlib.import_module(EXPERIMENTS[name].module)
    assert set(inspect.signature(module.main).parameters) >= {"argv", "prog"}


def test_an_unknown_experiment_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["experiment", "no-such-thing"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_help_of_an_experiment_is_its_own_and_names_the_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["experiment", "icl-linear", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: selfsup experiment icl-linear")
    assert "--quick" in out and "--preset {cpu,gpu,quick}" in out


def test_a_bad_override_is_one_line_and_exit_2(tmp_path, capsys):
    code = main(["experiment", "icl-linear", "--quick", "--out", str(tmp_path), "dim=zero"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("selfsup: error:") and "dim" in err and "\n" not in err


def _losses(metrics_path) -> list[float]:
    """The summed training loss of each logged step (evaluation rows left out)."""
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines()]
    return [
        sum(v for k, v in row.items() if k.endswith("_loss"))
        for row in rows
        if "lr" in row  # a training row
    ]


def test_icl_linear_quick_trains_and_writes_table_json_and_plot(tmp_path):
    out = tmp_path / "lin"
    assert main(["experiment", "icl-linear", "--quick", "--out", str(out)]) == 0
    assert {"table.md", "results.json", "icl_linear.png"} <= {p.name for p in out.iterdir()}
    results = json.loads((out / "results.json").read_text())
    assert set(results) >= {"transformer", "least squares"}
    assert len(results["transformer"]["mean"]) == 6  # one error per k = 0..points-1
    # trained: the checkpointed step is the preset's last
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(row["step"] for row in rows) == 6


# --- objectives ----------------------------------------------------------------------------------


def test_objectives_arms_differ_only_in_what_they_ablate():
    cfg = objectives.ObjectivesConfig()
    configs = {arm: objectives.arm_config(cfg, arm, seed=1) for arm in cfg.arms}
    for pcfg in configs.values():
        assert (pcfg.train.steps, pcfg.train.seed, pcfg.data.pack) == (500, 1, False)
        assert pcfg.data.max_seq_len == 64 and pcfg.train.batch_size == 16
    assert configs["mlm+nsp"].objectives == ["mlm", "nsp"]
    assert configs["mlm+sop"].objectives == ["mlm", "sop"]
    mask_only, random_only = configs["mask-only"].masking, configs["random-only"].masking
    assert (mask_only.replace_with_mask, mask_only.replace_with_random) == (1.0, 0.0)
    assert (random_only.replace_with_mask, random_only.replace_with_random) == (0.0, 1.0)
    assert configs["whole-word"].masking.whole_word and not configs["mlm"].masking.whole_word
    # the same masking rate everywhere: only the replacement differs
    assert len({pcfg.masking.rate for pcfg in configs.values()}) == 1


def test_objectives_rejects_an_unknown_arm():
    cfg = apply_overrides(objectives.ObjectivesConfig(), ["arms=mlm,electra"])
    with pytest.raises(UserError, match="arms: expected some of"):
        cfg.validate()


@pytest.fixture(scope="module")
def objectives_quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("objectives")
    said: list[str] = []
    cfg = objectives.preset_quick()
    cfg.threads = 1  # as the workers of the jobs=2 run below: the same kernels, the same numbers
    results = objectives.run_objectives(cfg, out, say=said.append)
    return out, cfg, results, said


def test_objectives_quick_every_arm_trains_and_is_scored(objectives_quick):
    out, cfg, results, _ = objectives_quick
    arms = {r.arm for r in results}
    assert arms == {*cfg.arms, objectives.RANDOM_INIT}
    for arm in cfg.arms:
        losses = _losses(out / f"{arm}-seed0" / "metrics.jsonl")
        assert len(losses) == cfg.pretrain_steps  # logged every step
        assert losses[-1] < losses[0]  # it learned something in its few steps
        scores = next(r.scores for r in results if r.arm == arm)
        assert 0 <= scores["mlm_accuracy"] <= 1 and 0 <= scores["sentiment"] <= 1
        assert 0 <= scores["nsp_probe"] <= 1 and 0 <= scores["sop_probe"] <= 1
    sop = next(r.scores for r in results if r.arm == "mlm+sop")
    assert {"sop_head_on_sop", "sop_head_on_nsp"} <= set(sop)  # its trained head, read both ways
    assert "sop_head_on_sop" not in next(r.scores for r in results if r.arm == "mlm")
    # the second arm reused the first one's tokenized corpus instead of building its own
    first, second = (out / f"{arm}-seed0" / "data" / "train" for arm in cfg.arms)
    assert sorted(p.name for p in first.iterdir()) == sorted(p.name for p in second.iterdir())
    assert {"table.md", "results.json", "objectives.png"} <= {p.name for p in out.iterdir()}
    table = (out / "table.md").read_text()
    assert all(arm in table for arm in arms)


def test_objectives_rerun_reuses_finished_arms(objectives_quick):
    out, cfg, results, _ = objectives_quick
    finished = sorted(out.rglob("final_metrics.json"))
    written = [path.stat().st_mtime_ns for path in finished]
    again = objectives.run_objectives(cfg, out, say=lambda _: None)
    assert [path.stat().st_mtime_ns for path in finished] == written  # no run made again
    assert sorted(out.rglob("final_metrics.json")) == finished
    assert [r.scores for r in again] == [r.scores for r in results]


def test_objectives_side_by_side_gives_the_sequential_numbers(objectives_quick, tmp_path):
    _, cfg, results, _ = objectives_quick
    said: list[str] = []
    parallel = objectives.run_objectives(replace(cfg, jobs=2), tmp_path, say=said.append)
    assert [(r.arm, r.seed, r.scores) for r in parallel] == [
        (r.arm, r.seed, r.scores) for r in results
    ]
    assert sum(line.startswith("  finished") for line in said) == 2 * len(cfg.arms) + 1
    assert (tmp_path / "logs").is_dir()


def test_reuse_from_refuses_a_run_prepared_differently(tmp_path):
    cfg = preset_tiny()
    cfg.train.steps, cfg.train.eval_every = 1, 0
    pretrain(cfg, tmp_path / "a")
    other = preset_tiny()
    other.train.steps, other.train.seed = 1, cfg.train.seed + 1  # another held-out split
    other.data.reuse_from = str(tmp_path / "a")
    with pytest.raises(UserError, match=r"reuse_from=.*made with other train\.seed"):
        pretrain(other, tmp_path / "b")


# --- dna -----------------------------------------------------------------------------------------

needs_splice = pytest.mark.skipif(
    shared_data_dir() is None or not (shared_data_dir() / "dna-splice").is_dir(),
    reason="needs ../shared/data/dna-splice (UCI splice junctions); absent on this machine",
)


def test_dna_arms_differ_only_in_init_and_share_their_pair_grid():
    cfg = dna.DnaConfig()
    configs = {arm: dna.finetune_config(cfg, Path("enc"), arm, 2, 1e-3) for arm in dna.ARMS}
    for fcfg in configs.values():
        assert fcfg.task.name == "dna-splice" and fcfg.task.sequence_mapping == "random"
        assert fcfg.task.mapping_seed == dna.TABLE_SEED + 2  # seed 2: the paper's table 102
        assert (fcfg.train.steps, fcfg.train.batch_size, fcfg.train.seed) == (300, 16, 2)
    assert not configs["minilm"].random_init and configs["minilm random init"].random_init
    assert cfg.learning_rates("minilm") == cfg.learning_rates("minilm random init")
    assert cfg.learning_rates("chinese") == cfg.learning_rates("chinese random init")


def _tiny_chinese_run(folder: Path) -> Path:
    """A tiny BERT pretrained for 2 steps on a few lines: an encoder in seconds."""
    corpus = folder / "corpus.txt"
    corpus.write_text("\n\n".join(["我们要坚持改革开放。", "北京是中国的首都。"] * 20) + "\n")
    cfg = apply_overrides(preset_tiny(), [f"data.corpus={corpus}", "train.steps=2"])
    cfg.train.eval_every, cfg.train.progress = 0, False
    pretrain(cfg, folder / "run")
    return folder / "run"


@needs_splice
def test_dna_quick_fine_tunes_both_arms_with_curves_cv_and_baselines(tmp_path):
    said: list[str] = []
    cfg = dna.preset_quick()
    cfg.chinese_run = str(_tiny_chinese_run(tmp_path))
    out = tmp_path / "dna"
    results = dna.run_dna(cfg, out, say=said.append)
    arms = {run["arm"] for run in results["runs"]}
    assert arms == {"chinese", "chinese random init"}
    for run in results["runs"]:
        assert [step for step, _ in run["curve"]] == [2, 4]  # dev accuracy every 2 steps
        assert 0 <= run["test"] <= 1
    assert results["split"] == {"train": 2871, "dev": 159, "test": 160}  # the paper's split
    assert all(len(scores) == 2 for scores in results["cross_validation"].values())
    kmers = results["kmer_baselines"]
    # the positions carry the splice signal: far above the 52% majority class even at k <= 2
    assert kmers["k-mer counts + positions"]["test"] > 0.7
    mapping = json.loads((out / "chinese-seed0-lr0.001" / "sequence_mapping.json").read_text())
    assert mapping["mode"] == "random" and mapping["seed"] == dna.TABLE_SEED
    assert {"table.md", "results.json", "dna.png"} <= {p.name for p in out.iterdir()}
    # the weights of the runs are dropped: the scores and curves are what is kept
    assert not list(out.glob("chinese-seed0-*/model.safetensors"))


# --- cross-lingual -------------------------------------------------------------------------------


def test_fake_language_is_a_disjoint_copy_one_character_per_character():
    text = "我们要坚持改革开放，1998年Ａ。"
    fake = cross_lingual.fake_text(text)
    assert len(fake) == len(text)
    assert not set(fake) & set(text)  # no shared character at all
    # a bijection on the characters it saw: distinct in, distinct out
    assert len(set(fake)) == len(set(text))
    assert cross_lingual.fake_text("甲 乙\n丙") == "\n".join(
        [" ".join(cross_lingual.fake_text(c) for c in "甲乙"), cross_lingual.fake_text("丙")]
    )


@pytest.fixture(scope="module")
def cross_lingual_quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("cross-lingual")
    return out, cross_lingual.run_cross_lingual(cross_lingual.preset_quick(), out, say=print)


def test_cross_lingual_quick_scores_every_arm_in_both_languages(cross_lingual_quick):
    out, results = cross_lingual_quick
    rows = results["fake-language"]
    assert {r["arm"] for r in rows} == set(cross_lingual.FAKE_ARMS)
    assert all(0 <= r["chinese"] <= 1 and 0 <= r["fake"] <= 1 for r in rows)
    # the bilingual corpus really is half fake: its tokenizer knows the fake test's characters,
    # the Chinese-only one does not
    from selfsup.data.tokenizer import Tokenizer

    fake_csv = next((out / "sentiment-data").glob("*/fake.csv"))
    fake_test = fake_csv.read_text().splitlines()[1].rsplit(",", 1)[0]
    for corpus, known in (("bilingual", True), ("chinese", False)):
        tokenizer = Tokenizer.load(out / f"pretrain-{corpus}" / "tokenizer")
        ids = tokenizer.encode(fake_test).ids
        unknown = sum(i == tokenizer.unk_id for i in ids) / len(ids)
        assert (unknown < 0.5) if known else (unknown > 0.9)
    assert {"table.md", "results.json", "cross_lingual.png"} <= {p.name for p in out.iterdir()}


# --- pretrained-vs-scratch (the demo) -------------------------------------------------------------


def test_pretrained_vs_scratch_quick_runs_the_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["experiment", "pretrained-vs-scratch", "--quick", "--out", str(out)]) == 0
    results = json.loads((out / "demo_results.json").read_text())
    assert {row["task"] for row in results["rows"]} == {"sentiment", "ner"}
    assert (out / "pretrained_vs_scratch.png").exists() and (out / "few_labels.png").exists()
    # 2 tasks x 2 arms x 2 seeds fine-tuned from the one pretrained encoder
    assert len(results["runs"]) == 8 and (out / "pretrained" / "model.safetensors").exists()
