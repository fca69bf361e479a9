"""Does self-supervised pretraining help when labels are few? SimCLR and BYOL against the same
backbone at random initialisation and against raw pixels, judged by a linear probe and k-NN with
1, 5, 10 and all labels per class, over several seeds; a table and a plot.

    python -m selfsup.experiments.ssl_few_labels --preset digits --out runs/ssl-digits --seeds 3
    python -m selfsup.experiments.ssl_few_labels --preset mnist --out runs/ssl-mnist --seeds 3

Seed s pretrains SimCLR and BYOL with train.seed = s, initialises the random backbone with seed s
and draws the labelled images with seed s (the same images for every method), so the spread over
seeds covers pretraining, initialisation and the choice of labelled images. Finished runs are
reused and interrupted ones resumed: run the same command again after a kill.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from selfsup.config import apply_overrides
from selfsup.data.images import load_images
from selfsup.evaluation.probe import (
    ProbeResult,
    extract_features,
    format_table,
    probe_features,
    raw_pixels,
    summarize,
)
from selfsup.evaluation.probe_run import load_vision_run
from selfsup.experiments.ssl_few_labels_config import main  # noqa: F401 (re-export)
from selfsup.recipes import RECIPES, initialised_model, pretrain
from selfsup.recipes.vision import PRESETS
from selfsup.reporting import pyplot, save_figure
from selfsup.runs import is_run

LABELS_PER_CLASS: list[int | None] = [1, 5, 10, None]


def _pretrain_all(preset: str, out: Path, seeds: list[int], archs: list[str], overrides: list[str]):
    timings_path = out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    runs = {}
    for seed in seeds:
        for arch in archs:
            run_dir = out / f"{arch}-seed{seed}"
            runs[(arch, seed)] = run_dir
            if (run_dir / "final_metrics.json").exists():
                continue
            cfg = apply_overrides(PRESETS[preset](arch), [f"train.seed={seed}", *overrides])
            start = time.perf_counter()
            print(f"pretraining {run_dir}", flush=True)
            pretrain(cfg, run_dir, resume=is_run(run_dir))
            timings[run_dir.name] = round(time.perf_counter() - start, 1)
            timings_path.write_text(json.dumps(timings, indent=1) + "\n")
    return runs


def _probe_seed(runs: dict, seed: int, archs: list[str]) -> list[ProbeResult]:
    loaded = {arch: load_vision_run(runs[(arch, seed)]) for arch in archs}
    cfg = loaded[archs[0]].config
    data = load_images(cfg.data)
    mean, std = data.channel_stats()
    backbones = {arch: run.model.backbone for arch, run in loaded.items()}
    backbones["random init"] = initialised_model(RECIPES[cfg.arch], cfg).backbone  # train.seed
    features = {
        name: (
            extract_features(b, data.train.images, mean, std),
            extract_features(b, data.test.images, mean, std),
        )
        for name, b in backbones.items()
    }
    features["raw pixels"] = (raw_pixels(data.train.images), raw_pixels(data.test.images))
    return probe_features(
        features, data.train.labels.numpy(), data.test.labels.numpy(), LABELS_PER_CLASS, [seed]
    )


def plot_results(results: list[ProbeResult], path: Path, title: str) -> None:
    """Accuracy against labels per class, a panel per probe, a line per method (mean +- std)."""
    plt = pyplot()
    summary = summarize(results)
    columns = list(dict.fromkeys(r.labels_per_class for r in results))
    methods = list(dict.fromkeys(r.method for r in results))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, evaluator in zip(axes, ("linear", "knn")):
        for method in methods:
            points = [summary[(method, evaluator, c)] for c in columns]
            ax.errorbar(
                range(len(columns)),
                [p[0] for p in points],
                yerr=[p[1] for p in points],
                marker="o",
                capsize=3,
                label=method,
                linestyle="--" if method in ("random init", "raw pixels") else "-",
            )
        ax.set_xticks(range(len(columns)), columns)
        ax.set(
            xlabel="labelled images per class",
            title=f"{title}: {'linear probe' if evaluator == 'linear' else 'k-NN (k=20, cosine)'}",
        )
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    axes[0].legend(fontsize=8)
    save_figure(fig, path)
    plt.close(fig)


def run_experiment(
    preset: str, out: str | Path, seeds: int, archs: list[str], overrides: list[str]
) -> str:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = _pretrain_all(preset, out, list(range(seeds)), archs, overrides)
    results = [r for seed in range(seeds) for r in _probe_seed(runs, seed, archs)]
    (out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")
    table = format_table(results)
    (out / "table.md").write_text(table + "\n")
    plot_results(results, out / "accuracy_vs_labels.png", preset)
    return table


if __name__ == "__main__":
    raise SystemExit(main())
