"""Why `selfsup serve` is Starlette + uvicorn and not Gradio, measured: the install size each
stack adds to a fresh virtual environment, and the start-up time of a one-page app in each (from
the process start to the first HTTP 200), next to `selfsup serve` itself on given runs.

Each stack is installed beforehand into its own throwaway environment, e.g.

    python3 -m venv /tmp/serve-venv && /tmp/serve-venv/bin/pip install starlette uvicorn
    python3 -m venv /tmp/gradio-venv && /tmp/gradio-venv/bin/pip install gradio
    python benchmarks/serve_stack.py --venv starlette=/tmp/serve-venv --venv gradio=/tmp/gradio-venv \\
        --serve-runs runs/pd-small runs/shakespeare

Only loopback is contacted; Gradio's usage analytics are turned off (GRADIO_ANALYTICS_ENABLED).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HELLO = {
    "starlette": """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

async def page(request):
    return HTMLResponse("<p>hello</p>")

uvicorn.run(Starlette(routes=[Route("/", page)]), host="127.0.0.1", port=int(sys.argv[1]),
            log_level="warning")
""",
    "gradio": """
import sys, gradio as gr
gr.Interface(fn=lambda text: text, inputs="text", outputs="text").launch(
    server_name="127.0.0.1", server_port=int(sys.argv[1]), quiet=True)
""",
}


def _site_packages_bytes(venv: Path) -> int:
    (site,) = venv.glob("lib/python3*/site-packages")
    return sum(f.stat().st_size for f in site.rglob("*") if f.is_file() and not f.is_symlink())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _seconds_to_first_page(command: list[str], port: int, path: str, timeout: float) -> float:
    """Start `command`, poll http://127.0.0.1:port/path until it answers 200; seconds taken."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        while time.perf_counter() - start < timeout:
            if process.poll() is not None:
                raise RuntimeError(f"{command[0]} exited: {process.stderr.read()[-500:]}")
            try:
                # the server this script just started, on loopback: no network is reached
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - start
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"no page after {timeout:.0f} s")
    finally:
        process.terminate()
        process.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--venv",
        action="append",
        default=[],
        metavar="STACK=DIR",
        help="a stack (starlette or gradio) and the venv it is installed in; repeatable",
    )
    parser.add_argument("--serve-runs", nargs="*", default=[], help="runs for `selfsup serve`")
    parser.add_argument("--repeats", type=int, default=3, help="start-ups per stack (median)")
    args = parser.parse_args(argv)

    baseline = Path(tempfile.mkdtemp()) / "empty"
    subprocess.run([sys.executable, "-m", "venv", str(baseline)], check=True)
    empty = _site_packages_bytes(baseline)
    print("| stack | adds to a fresh venv | start-up to the first page (median) |")
    print("|---|---|---|")
    for item in args.venv:
        stack, _, folder = item.partition("=")
        venv = Path(folder)
        added = (_site_packages_bytes(venv) - empty) / 2**20
        script = Path(tempfile.mkdtemp()) / f"{stack}_hello.py"
        script.write_text(HELLO[stack])
        times = []
        for _ in range(args.repeats):
            port = _free_port()
            command = [str(venv / "bin" / "python"), str(script), str(port)]
            times.append(_seconds_to_first_page(command, port, "/", timeout=180))
        print(f"| {stack} | {added:.0f} MiB | {statistics.median(times):.2f} s |")
    if args.serve_runs:
        times = []
        for _ in range(args.repeats):
            port = _free_port()
            command = [sys.executable, "-m", "selfsup.cli", "serve", *args.serve_runs]
            command += ["--port", str(port), "--device", "cpu"]
            times.append(_seconds_to_first_page(command, port, "/api/runs", timeout=600))
        runs = len(args.serve_runs)
        print(f"| selfsup serve, {runs} runs | (torch) | {statistics.median(times):.2f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
