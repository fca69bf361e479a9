"""Does speech self-supervision help when labels are few? TERA and APC pretrained on FSDD without
one speaker, judged by frozen-feature probes (selfsup/evaluation/audio_probe.py) against the same
encoder at random initialisation and pooled log-mel frames, with 1, 5, 20 and all labels per
class, over several seeds; a table and a plot. Every method's utterance features are pooled the
same way (`pooling`: segments or mean) from the same layer choice (`layer`: one, all, or SUPERB's
learned weighted sum, whose weights the table reports).

    selfsup experiment speech --out runs/speech                 # CPU: the fsdd preset as is
    selfsup experiment speech --preset gpu --out runs/speech-gpu

Tasks: digit recognition on the speaker pretraining never saw (trained on the seen speakers'
recordings), and identification of the seen speakers (trained on their training takes, tested on
FSDD's held-out takes 0-4). Seed s pretrains with train.seed = s, initialises the random encoder
with seed s and draws the labelled utterances with seed s (the same for every method), so the
spread covers pretraining, initialisation and the choice of labels. Finished runs (those with
final_metrics.json) are reused when made with the same settings, refused otherwise; interrupted
ones are resumed: run the same command again after a kill.

Reading it against the literature: SUPERB (Yang et al. 2021) finds TERA and APC above log-mel
on speaker identification and keyword spotting; with FSDD's six speakers and a 0.6M-parameter
encoder trained for minutes, expect smaller gaps.
"""

from __future__ import annotations

import time
from pathlib import Path

from selfsup.errors import UserError
from selfsup.evaluation.audio_probe import (
    LOG_MEL,
    RANDOM_INIT,
    TaskResults,
    format_task_tables,
    parse_layer,
    parse_pooling,
    probe_encoders,
    probe_tasks,
    results_json,
)
from selfsup.evaluation.probe import parse_labels_per_class, summarize
from selfsup.experiments.speech_config import (  # noqa: F401 (re-export: settings, main)
    ARCHS,
    PRESETS,
    SpeechConfig,
    main,
    preset_gpu,
    preset_quick,
)
from selfsup.io import atomic_write_json, atomic_write_text
from selfsup.reporting import pyplot, save_figure

# what a run's setup fills in, or what does not change its result: not compared on reuse
_FILLED_IN = ("train.progress", "train.threads")


def pretrain_config(cfg: SpeechConfig, arch: str, seed: int):
    """The audio preset for `arch`, with the experiment's data, excluded speaker, steps and seed.
    A folder other than FSDD is read with FSDD's file-name pattern (the probes need it too)."""
    from selfsup.data.audio import FSDD_NAME_PATTERN
    from selfsup.recipes.audio import FSDD
    from selfsup.recipes.audio import PRESETS as AUDIO_PRESETS

    if cfg.preset not in AUDIO_PRESETS:
        raise UserError(f"preset={cfg.preset!r}: expected one of {', '.join(AUDIO_PRESETS)}")
    if arch not in ARCHS:
        raise UserError(f"archs: {arch!r} is not a speech recipe (tera, apc)")
    pcfg = AUDIO_PRESETS[cfg.preset](arch)
    pcfg.data.dataset = cfg.dataset
    if cfg.dataset != FSDD:
        pcfg.data.speaker_pattern = FSDD_NAME_PATTERN.pattern
    pcfg.data.exclude_speakers = [cfg.exclude_speaker] if cfg.exclude_speaker else []
    pcfg.train.seed = seed
    pcfg.train.steps = cfg.steps
    pcfg.train.warmup_steps = min(pcfg.train.warmup_steps, max(cfg.steps // 10, 1))
    pcfg.train.progress = False
    return pcfg


def pretrain_or_reuse(cfg: SpeechConfig, arch: str, seed: int, run: Path) -> float | None:
    """One pretraining run, or the one an earlier invocation finished with the same settings;
    the seconds it took, None when reused."""
    from selfsup.experiments.demo import refuse_stale
    from selfsup.recipes import pretrain
    from selfsup.runs import is_run

    pcfg = pretrain_config(cfg, arch, seed)
    refuse_stale(run, pcfg, _FILLED_IN)
    if (run / "final_metrics.json").exists():
        return None
    started = time.perf_counter()
    print(f"pretraining {run}", flush=True)
    pretrain(pcfg, run, resume=is_run(run))
    return time.perf_counter() - started


def probe_seed(cfg: SpeechConfig, runs: dict[str, Path], seed: int) -> list[TaskResults]:
    """Every arch's encoder of seed s, its random init (seed s) and log-mel, on the same draws.
    The runs share their data and split (same data settings), so the first run's inputs serve."""
    from selfsup.recipes import RECIPES, initialised_model, load_run
    from selfsup.recipes.audio import load_audio_inputs

    loaded = {arch: load_run(run) for arch, run in runs.items()}
    first = next(iter(loaded.values()))
    inputs = load_audio_inputs(runs[first.config.arch])
    layer = parse_layer(cfg.layer, first.model.encoder.num_layers)
    encoders = {arch: run.model.encoder for arch, run in loaded.items()}
    # one random init per arch would differ only in APC's causal mask; both are shown
    for arch, run in loaded.items():
        name = RANDOM_INIT if len(loaded) == 1 else f"{RANDOM_INIT} ({arch})"
        encoders[name] = initialised_model(RECIPES[arch], run.config).encoder.eval()
    return probe_encoders(
        encoders,
        inputs,
        probe_tasks(inputs, cfg.task),
        parse_labels_per_class(cfg.labels_per_class),
        [seed],
        layer,
        pooling=parse_pooling(cfg.pooling),
    )


def merge(per_seed: list[list[TaskResults]]) -> list[TaskResults]:
    """Seeds' results (and learned layer weights) joined per task, in task order."""
    tasks: dict[str, TaskResults] = {}
    for results in per_seed:
        for r in results:
            joined = tasks.setdefault(r.task, TaskResults(r.task, []))
            joined.results.extend(r.results)
            joined.layer_weights.extend(r.layer_weights)
    return list(tasks.values())


def plot_results(results: list[TaskResults], path: Path, title: str) -> None:
    """Linear-probe accuracy (solid) and k-NN (dotted) against labels per class, a panel per
    task, a colour per method (mean +- std over seeds)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2), squeeze=False)
    for ax, task in zip(axes[0], results):
        summary = summarize(task.results)
        columns = list(dict.fromkeys(r.labels_per_class for r in task.results))
        methods = list(dict.fromkeys(r.method for r in task.results))
        for n, method in enumerate(methods):
            for evaluator, style in (("linear", "-"), ("knn", ":")):
                points = [summary[(method, evaluator, c)] for c in columns]
                ax.errorbar(
                    range(len(columns)),
                    [p[0] for p in points],
                    yerr=[p[1] for p in points],
                    marker="o",
                    capsize=3,
                    color=f"C{n}",
                    linestyle=style,
                    label=f"{method} ({'linear' if evaluator == 'linear' else 'k-NN'})",
                )
        ax.set_xticks(range(len(columns)), columns)
        what = "unseen speaker" if task.task == "digit" else "held-out takes"
        ax.set(
            xlabel="labelled utterances per class",
            ylabel="test accuracy",
            title=f"{title}: {task.task} ({what})",
        )
        ax.set_ylim(0.0, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    save_figure(fig, path)
    plt.close(fig)


def run_speech(cfg: SpeechConfig, out: Path, say=print) -> list[TaskResults]:
    """Pretrain (or reuse) every arch x seed, probe each seed, write table.md, results.json,
    timings.json and accuracy_vs_labels.png under `out`; the results."""
    if cfg.seeds <= 0:
        raise UserError(f"seeds must be positive, got {cfg.seeds}")
    parse_labels_per_class(cfg.labels_per_class)  # a typo fails before minutes of pretraining
    parse_layer(cfg.layer)
    parse_pooling(cfg.pooling)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    runs: dict[int, dict[str, Path]] = {}
    for seed in range(cfg.seeds):
        for arch in cfg.archs:
            run = out / f"{arch}-seed{seed}"
            runs.setdefault(seed, {})[arch] = run
            seconds = pretrain_or_reuse(cfg, arch, seed, run)
            if seconds is not None:
                timings[f"pretrain {run.name}"] = round(seconds, 1)
    per_seed = []
    for seed in range(cfg.seeds):
        started = time.perf_counter()
        per_seed.append(probe_seed(cfg, runs[seed], seed))
        timings[f"probe seed {seed}"] = round(time.perf_counter() - started, 1)
    results = merge(per_seed)
    table = format_task_tables(results)
    atomic_write_json(out / "results.json", results_json(results))
    atomic_write_json(out / "timings.json", timings)
    atomic_write_text(out / "table.md", table + "\n")
    plot_results(results, out / "accuracy_vs_labels.png", f"{'/'.join(cfg.archs)} vs {LOG_MEL}")
    say(table)
    say(f"plot: {out / 'accuracy_vs_labels.png'}")
    return results


if __name__ == "__main__":
    raise SystemExit(main())
