"""Which pretraining objectives matter? BERT's MLM alone, with next sentence prediction (NSP) or
with sentence order prediction (SOP); the lecture's ways of hiding a token ([MASK] only, a random
token only, BERT's 80/10/10); and whole-word against character masking for Chinese.

    selfsup experiment objectives --out runs/objectives

Anchors: RoBERTa (Liu et al. 2019, table 2) found that removing NSP matches or slightly improves
downstream results; ALBERT (Lan et al. 2020, table 5) that an NSP-trained model is near chance on
the SOP task (52%) while an SOP-trained one solves NSP reasonably (78.9%); BERT (Devlin et al.
2019, appendix C.2) that [MASK]-only and 80/10/10 are close on fine-tuning and random-only is worst.

Every arm is the `small` preset's BERT on People's Daily with the same steps, batch, sequence
length and data: sentence runs without packing for all arms (pairs cannot be packed, and a packed
MLM arm would see more real tokens). Seed s pretrains every arm with train.seed = s (the same
held-out articles, the same initial weights of the shared encoder) and fine-tunes with seed s.
Each arm is scored on
- held-out MLM accuracy with BERT's standard 15% / 80-10-10 masks, whatever its training masks;
- NSP and SOP probes: a logistic regression on the frozen encoder's [CLS] and mean vectors,
  trained on pairs from the training articles and tested on pairs from the held-out ones (a
  trained NSP or SOP head is also scored on both tasks, as ALBERT's table does);
- the demo's downstream tasks (sentiment accuracy, NER span F1), fine-tuned with one learning
  rate for all arms.
A random-init encoder is the reference row. Finished runs and scores are reused on a rerun.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from selfsup.config import save_run_config
from selfsup.data.masking import MaskingConfig
from selfsup.data.pretraining import BertPretrainingBatches
from selfsup.data.sentence_pairs import NOT_NEXT, SWAPPED
from selfsup.data.token_store import TokenStore
from selfsup.data.tokenizer import Tokenizer
from selfsup.evaluation.probe import linear_probe_accuracy
from selfsup.experiments import demo
from selfsup.experiments.jobs import Job, default_workers, run_jobs
from selfsup.experiments.objectives_config import (  # noqa: F401 (re-export: settings, main)
    ARMS,
    PRESETS,
    Arm,
    ObjectivesConfig,
    main,
    preset_gpu,
    preset_quick,
)
from selfsup.io import atomic_write_json
from selfsup.models.transformer import init_weights
from selfsup.recipes.text import PRESETS as PRETRAIN_PRESETS
from selfsup.recipes.text import PretrainConfig, load_pretrain_config, special_ids
from selfsup.reporting import markdown_table, mean_std, pyplot, save_figure

RANDOM_INIT = "random init"


def arm_config(cfg: ObjectivesConfig, arm: str, seed: int) -> PretrainConfig:
    from selfsup.config import apply_overrides

    spec = ARMS[arm]
    pcfg = PRETRAIN_PRESETS[cfg.preset]()
    pcfg.objectives = list(spec.objectives)
    pcfg.data.pack = False  # the same sentence runs for every arm: pairs cannot be packed
    pcfg.data.max_seq_len = cfg.max_seq_len
    pcfg.masking = MaskingConfig(
        rate=pcfg.masking.rate,
        replace_with_mask=spec.replace_with_mask,
        replace_with_random=spec.replace_with_random,
        whole_word=spec.whole_word,
    )
    pcfg.train.steps = cfg.pretrain_steps
    pcfg.train.warmup_steps = max(1, min(pcfg.train.warmup_steps, cfg.pretrain_steps // 10))
    pcfg.train.eval_every = 0
    pcfg.train.checkpoint_every = max(1, cfg.pretrain_steps // 4)
    pcfg.train.seed, pcfg.train.threads = seed, cfg.threads
    return apply_overrides(pcfg, cfg.pretrain_overrides)


def pretrain_arm(cfg: ObjectivesConfig, out: Path, arm: str, seed: int, say=print) -> Path:
    run = out / f"{arm}-seed{seed}"
    pcfg = arm_config(cfg, arm, seed)
    first = out / f"{cfg.arms[0]}-seed{seed}"
    if run != first:  # the first arm of a seed tokenizes the corpus; the others link to it
        pcfg.data.reuse_from = str(first)
    if not (run / "final_metrics.json").exists():
        say(f"pretraining {run.name} ({cfg.pretrain_steps} steps)")
    started = time.perf_counter()
    # where the tokenized corpus came from does not change the run
    if not demo.pretrain_or_reuse(pcfg, run, ignore=("data.reuse_from",)):
        seconds = {"seconds": time.perf_counter() - started}
        atomic_write_json(run / "pretrain_seconds.json", seconds)
    return run


# ---------------------------------------------------------------- NSP / SOP probes
def _pair_batches(store: TokenStore, run: Path, task: str, pairs: int, seed: int) -> list[dict]:
    batches = BertPretrainingBatches(
        store,
        special_ids(Tokenizer.load(run / "tokenizer")),
        [task],
        MaskingConfig(),
        load_pretrain_config(run / "config.json").data.max_seq_len,
        64,
        seed,
    )
    out, index = [], 0
    while sum(len(b["input_ids"]) for b in out) < pairs:
        batch = batches.batch(index)
        keep = batch[f"{task}_labels"] >= 0  # SOP ignores pairs whose B is random
        out.append({k: v[keep] if torch.is_tensor(v) and v.dim() else v for k, v in batch.items()})
        index += 1
    return out


@torch.no_grad()
def _pair_features(model, batches: list[dict], task: str):
    """[CLS] vector and mean token vector of each pair, the trained heads' logits, the labels."""
    features, logits, labels = [], {name: [] for name in ("nsp", "sop")}, []
    for batch in batches:
        hidden = model.encoder(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1)
        features.append(torch.cat([hidden[:, 0], mean], dim=-1))
        for name in logits:
            if name in model.objectives:
                head = model.objectives[name].head
                logits[name].append(head(model.encoder.pool(hidden)))
        labels.append(batch[f"{task}_labels"])
    heads = {name: torch.cat(v) for name, v in logits.items() if v}
    return torch.cat(features).numpy(), heads, torch.cat(labels).numpy()


def probe_scores(cfg: ObjectivesConfig, run: Path, random_init: bool = False) -> dict[str, float]:
    """NSP and SOP accuracy of a linear probe on the frozen encoder (and of trained heads)."""
    from selfsup.recipes.text import load as load_text_run
    from selfsup.runs import RunFolder

    loaded = load_text_run(RunFolder(run))
    model = loaded.model.eval()
    if random_init:
        torch.manual_seed(load_pretrain_config(run / "config.json").train.seed)
        init_weights(model, loaded.config.model.initializer_range)
    train_store = TokenStore.open(run / "data" / "train")
    test_store = TokenStore.open(run / "data" / "valid")
    scores = {}
    for task, positive in (("nsp", NOT_NEXT), ("sop", SWAPPED)):
        train = _pair_batches(train_store, run, task, cfg.probe_train_pairs, seed=11)
        test = _pair_batches(test_store, run, task, cfg.probe_test_pairs, seed=12)
        train_x, _, train_y = _pair_features(model, train, task)
        test_x, heads, test_y = _pair_features(model, test, task)
        scores[f"{task}_probe"] = linear_probe_accuracy(train_x, train_y, test_x, test_y, train_x)
        for head, head_logits in heads.items():  # a trained head read as this task's classifier
            guess = head_logits.argmax(-1).numpy() == (NOT_NEXT if head == "nsp" else SWAPPED)
            scores[f"{head}_head_on_{task}"] = float((guess == (test_y == positive)).mean())
    return scores


def _cached(path: Path, settings: dict, compute) -> dict:
    """compute(), or what an earlier call with the same settings saved at `path`."""
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("settings") == settings:
            return saved["scores"]
    scores = compute()
    atomic_write_json(path, {"settings": settings, "scores": scores})
    return scores


# ---------------------------------------------------------------- downstream
def downstream_scores(
    cfg: ObjectivesConfig, run: Path, seed: int, tasks: dict, random_init: bool = False
) -> dict[str, float]:
    dcfg = cfg.downstream()
    scores = {}
    for task, info in tasks.items():
        arm = "scratch" if random_init else "pretrained"
        fcfg = demo.finetune_config(
            dcfg, run, task, arm, seed, cfg.finetune_lr, task_examples=info.train_examples
        )
        fcfg.train.progress = False
        target = run / (f"scratch-{task}" if random_init else f"finetune-{task}")
        metrics, _ = demo.finetune_or_reuse(fcfg, target)
        demo.drop_weights(target)  # the scores are what this experiment keeps
        scores[task] = metrics[f"test_{info.metric}"]
    return scores


def _probe_settings(cfg: ObjectivesConfig) -> dict:
    return {"train_pairs": cfg.probe_train_pairs, "test_pairs": cfg.probe_test_pairs}


def score_arm(cfg: ObjectivesConfig, out: Path, arm: str, seed: int, tasks: dict) -> dict:
    """A pretrained arm's held-out MLM accuracy, NSP/SOP probes and downstream scores."""
    run = out / f"{arm}-seed{seed}"
    final = json.loads((run / "final_metrics.json").read_text())
    scores = {"mlm_accuracy": final["eval_mlm_accuracy"]}
    scores |= _cached(run / "probes.json", _probe_settings(cfg), lambda: probe_scores(cfg, run))
    scores |= downstream_scores(cfg, run, seed, tasks)
    print(f"  {arm} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    return scores


def score_random_init(cfg: ObjectivesConfig, out: Path, seed: int, tasks: dict) -> dict:
    """The reference row: the first arm's architecture, tokenizer and data from random weights."""
    reference = out / f"{cfg.arms[0]}-seed{seed}"
    scores = _cached(
        out / f"random-init-seed{seed}-probes.json",
        _probe_settings(cfg),
        lambda: probe_scores(cfg, reference, random_init=True),
    )
    return scores | downstream_scores(cfg, reference, seed, tasks, random_init=True)


# ---------------------------------------------------------------- the experiment
@dataclass
class ArmScores:
    arm: str
    seed: int
    scores: dict[str, float] = field(default_factory=dict)


COLUMNS = {
    "mlm_accuracy": "held-out MLM acc",
    "nsp_probe": "NSP probe",
    "sop_probe": "SOP probe",
    "nsp_head_on_nsp": "NSP head on NSP",
    "nsp_head_on_sop": "NSP head on SOP",
    "sop_head_on_sop": "SOP head on SOP",
    "sop_head_on_nsp": "SOP head on NSP",
}


def summarise(results: list[ArmScores], tasks: list[str]) -> tuple[list[str], list[list[str]]]:
    names = {**COLUMNS, **{task: task for task in tasks}}
    present = [k for k in names if any(k in r.scores for r in results)]
    rows = []
    for arm in dict.fromkeys(r.arm for r in results):
        row = [arm]
        for key in present:
            values = [r.scores[key] for r in results if r.arm == arm and key in r.scores]
            row.append(mean_std(float(np.mean(values)), float(np.std(values))) if values else "")
        rows.append(row)
    return ["arm", *[names[k] for k in present]], rows


def plot(results: list[ArmScores], keys: list[str], path: Path) -> None:
    plt = pyplot()
    arms = list(dict.fromkeys(r.arm for r in results))
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        means, stds = [], []
        for arm in arms:
            values = [r.scores[key] for r in results if r.arm == arm and key in r.scores]
            means.append(np.mean(values) if values else np.nan)
            stds.append(np.std(values) if values else 0.0)
        ax.bar(range(len(arms)), means, yerr=stds, capsize=3, color="tab:blue")
        ax.set_xticks(range(len(arms)), arms, rotation=60, ha="right", fontsize=8)
        ax.set_title(COLUMNS.get(key, key), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("pretraining objectives: same data, steps and seeds (mean +- std)")
    save_figure(fig, path)
    plt.close(fig)


def run_objectives(cfg: ObjectivesConfig, out: Path, say=print) -> list[ArmScores]:
    cfg.validate()
    out.mkdir(parents=True, exist_ok=True)
    # the latest settings; each arm's run is checked on reuse (demo.refuse_stale), so a rerun
    # that adds seeds or folds keeps what is still valid
    save_run_config(cfg, out / "config.json", resume=False)
    for arm in cfg.arms:  # every arm's config is checked before any long work
        arm_config(cfg, arm, 0).validate()
    tasks = demo.check_runs(cfg.downstream(), out) if cfg.tasks else {}
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    jobs = []
    for seed in range(cfg.seeds):
        first = f"pretrain {cfg.arms[0]} seed{seed}"  # tokenizes the corpus the others reuse
        for arm in cfg.arms:
            pretrained = f"pretrain {arm} seed{seed}"
            after = () if arm == cfg.arms[0] else (first,)
            jobs.append(Job(pretrained, pretrain_arm, (cfg, out, arm, seed), after))
            jobs.append(
                Job(
                    f"score {arm} seed{seed}",
                    score_arm,
                    (cfg, out, arm, seed, tasks),
                    (pretrained,),
                )
            )
        jobs.append(
            Job(
                f"score {RANDOM_INIT} seed{seed}",
                score_random_init,
                (cfg, out, seed, tasks),
                (first,),
            )
        )
    done = run_jobs(jobs, default_workers(cfg.jobs), out / "logs", say)
    results = [
        ArmScores(arm, seed, done[f"score {arm} seed{seed}"])
        for seed in range(cfg.seeds)
        for arm in [*cfg.arms, RANDOM_INIT]
    ]
    headers, rows = summarise(results, cfg.tasks)
    table = markdown_table(headers, rows)
    (out / "table.md").write_text(table + "\n")
    atomic_write_json(out / "results.json", [r.__dict__ for r in results])
    keys = ["mlm_accuracy", "nsp_probe", "sop_probe", *cfg.tasks]
    plot(results, keys, out / "objectives.png")
    say(table)
    say(f"plot: {out / 'objectives.png'}")
    return results


if __name__ == "__main__":
    raise SystemExit(main())
