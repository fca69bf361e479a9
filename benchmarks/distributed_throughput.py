"""Data-parallel throughput on this machine: 1 process x 2 threads against 2 processes x 1 thread.

What is measured: `selfsup pretrain` as a user runs it (the CLI, the one training loop, BERT MLM
on People's Daily), for each preset of --presets, in three arms with the same global batch:
- 1 x 1: one process, one thread (the reference);
- 1 x 2: one process, two threads (torch's intra-op parallelism: `train.threads=2`);
- 2 x 1: two processes of one thread, `torchrun --standalone --nproc_per_node=2 -m selfsup
  pretrain ...` (DDP over gloo on loopback; each rank keeps half of every micro-batch).
The tokenizer and token stores are prepared once per preset in OUT/prepared-PRESET and reused by
every run (`data.reuse_from`), so the runs time training only. A run trains --steps steps and logs
real tokens per second every --log-every steps; its speed is the median of those windows, the
first left out (warm-up: first allocations, DDP's first bucket rebuild). The arms take turns (the
order rotates every repeat) and each row reports the median over --repeats runs. The speed-up
against 1 x 1 is paired: the median over repeats of the ratio of two runs of the same repeat,
seconds apart, so that a change in the machine's load between repeats cancels.

Beside the speeds, the gradient bytes each rank sends per optimizer step under DDP (a ring
all-reduce of the fp32 gradients: 2 (N - 1) / N times their size) are printed for each preset;
docs/DISTRIBUTED.md turns them into an estimate for 8 GPUs.

Usage:
    python benchmarks/distributed_throughput.py --out runs/dist-throughput
    python benchmarks/distributed_throughput.py --out runs/dist-throughput --presets small \\
        --steps 100 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ARMS = {  # name -> (processes, threads per process)
    "1 x 1": (1, 1),
    "1 x 2": (1, 2),
    "2 x 1": (2, 1),
}


def _command(processes: int) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "selfsup"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*launcher, f"--nproc_per_node={processes}", "-m", "selfsup"]


def _selfsup(processes: int, threads: int, args: list[str]) -> None:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE")
    done = subprocess.run(
        [*_command(processes), *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{done.stderr[-3000:]}")


def prepare(preset: str, out: Path) -> Path:
    """A one-step run of the preset: its tokenizer and token stores, for the others to reuse."""
    prepared = out / f"prepared-{preset}"
    if not (prepared / "model.safetensors").exists():
        shutil.rmtree(prepared, ignore_errors=True)
        args = ["pretrain", "--preset", preset, "--out", str(prepared)]
        _selfsup(1, 2, [*args, "train.steps=1", "train.progress=false"])
    return prepared


def measure(preset: str, prepared: Path, arm: str, run: Path, steps: int, log_every: int) -> float:
    """Median tokens/s of one run's logged windows, the first left out."""
    processes, threads = ARMS[arm]
    shutil.rmtree(run, ignore_errors=True)
    args = ["pretrain", "--preset", preset, "--out", str(run), f"data.reuse_from={prepared}"]
    args += [
        f"train.steps={steps}",
        f"train.log_every={log_every}",
        f"train.threads={threads}",
        f"train.checkpoint_every={steps}",
        "train.checkpoint_seconds=0",
        "train.eval_every=0",
        "train.eval_batches=1",
        "train.progress=false",
    ]
    _selfsup(processes, threads, args)
    logged = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["tokens_per_s"] for r in logged if "tokens_per_s" in r]
    shutil.rmtree(run)
    return statistics.median(speeds[1:])


def gradient_bytes(preset: str, prepared: Path) -> tuple[int, float]:
    """(trainable parameters, MB each of 2 ranks sends per step in DDP's ring all-reduce)."""
    import torch

    from selfsup.recipes import RECIPES
    from selfsup.runs import RunFolder

    cfg = RunFolder.open(prepared).config(RECIPES["bert"].config_class)
    with torch.device("meta"):
        model = RECIPES["bert"].build_model(cfg, {})
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return n, 4 * n * 2 * (2 - 1) / 2 / 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for data and results")
    parser.add_argument("--presets", default="tiny,small", help="BERT presets (default tiny,small)")
    parser.add_argument("--steps", type=int, default=60, help="steps per run (default 60)")
    parser.add_argument("--log-every", type=int, default=10, help="steps per speed window")
    parser.add_argument("--repeats", type=int, default=5, help="runs per arm (default 5)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for preset in args.presets.split(","):
        prepared = prepare(preset, args.out)
        speeds: dict[str, list[float]] = {arm: [] for arm in ARMS}
        started = time.perf_counter()
        for repeat in range(args.repeats):
            arms = list(ARMS)
            arms = arms[repeat % len(arms) :] + arms[: repeat % len(arms)]
            for arm in arms:
                run = args.out / "runs" / f"{preset}-{arm.replace(' ', '')}-{repeat}"
                speeds[arm].append(measure(preset, prepared, arm, run, args.steps, args.log_every))
                print(f"{preset} {arm} repeat {repeat}: {speeds[arm][-1]:.0f} tokens/s", flush=True)
        params, megabytes = gradient_bytes(preset, prepared)
        for arm in ARMS:
            paired = [s / b for s, b in zip(speeds[arm], speeds["1 x 1"])]
            results.append(
                {
                    "preset": preset,
                    "arm": arm,
                    "tokens_per_s": statistics.median(speeds[arm]),
                    "speedup_vs_1x1": statistics.median(paired),
                    "runs": speeds[arm],
                    "parameters": params,
                    "allreduce_mb_per_rank_per_step": megabytes,
                }
            )
        print(f"{preset}: {time.perf_counter() - started:.0f} s", flush=True)
    lines = [
        "| preset | processes x threads | tokens/s (median) | vs 1 x 1 (paired median) | runs |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        runs = ", ".join(f"{x:.0f}" for x in r["runs"])
        speed, ratio = f"{r['tokens_per_s']:.0f}", f"{r['speedup_vs_1x1']:.2f}x"
        lines.append(f"| {r['preset']} | {r['arm']} | {speed} | {ratio} | {runs} |")
    for preset in args.presets.split(","):
        r = next(r for r in results if r["preset"] == preset)
        lines.append(
            f"\n{preset}: {r['parameters']:,} trainable parameters; DDP sends "
            f"{r['allreduce_mb_per_rank_per_step']:.1f} MB per rank per step on 2 ranks"
        )
    table = "\n".join(lines)
    print(table)
    (args.out / "table.md").write_text(table + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
