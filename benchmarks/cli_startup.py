"""How long `selfsup COMMAND --help` and a bad flag take: the wall time of a fresh
`python -m selfsup ...` process for every command, beside the two peers measured in the same run:
`python -c "import torch"` (what every command paid before its parser stopped importing torch)
and `python -c pass` (the interpreter alone).

    python benchmarks/cli_startup.py                 # median of 7 runs each
    python benchmarks/cli_startup.py --repeats 15

The runs are interleaved (one of each per round), so a busy moment of a shared machine falls on
every command alike; the table shows medians and each command's ratio to the two peers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from selfsup.cli import COMMAND_HELP

PEERS = {
    'python -c "import torch"': [sys.executable, "-c", "import torch"],
    "python -c pass": [sys.executable, "-c", "pass"],
}


def commands() -> dict[str, list[str]]:
    """Label -> argv of every `python -m selfsup ...` measured, then the two peers."""
    cases = [["--help"], *([name, "--help"] for name in COMMAND_HELP)]
    cases += [["pretrain", "--arch", "tera", "--help"], ["experiment", "objectives", "--help"]]
    cases += [["pretrain", "--bogus"], ["pretrain", "--out", "runs/x", "--bogus"]]
    measured = {f"selfsup {' '.join(c)}": [sys.executable, "-m", "selfsup", *c] for c in cases}
    return measured | PEERS


def wall_seconds(argv: list[str]) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs per command (default 7)")
    args = parser.parse_args(argv)
    cases = commands()
    times: dict[str, list[float]] = {label: [] for label in cases}
    for _ in range(args.repeats):
        for label, command in cases.items():
            times[label].append(wall_seconds(command))
    median = {label: statistics.median(values) for label, values in times.items()}
    torch_s, bare_s = (median[label] for label in PEERS)
    width = max(map(len, cases))
    print(f"median of {args.repeats} wall times, {os.cpu_count()} CPUs, Python {sys.version[:6]}")
    print(f"{'command':<{width}}  {'median s':>8}  {'/ import torch':>14}  {'/ pass':>7}")
    for label, seconds in median.items():
        print(
            f"{label:<{width}}  {seconds:8.3f}  {seconds / torch_s:13.2f}x  {seconds / bare_s:6.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
