"""The core with no value cache configured, side by side with a baseline git ref.

A loader without ``value_cache=`` must cost what it cost before the value cache existed.
This runs the core scenarios of ``_core_scenarios.py`` in two worker processes: one imports
``aiodataloader`` from ``--baseline`` (a git ref, exported to a temporary folder), the other
from the working tree. Turns alternate (A B, B A, ...), in ``--epochs`` sets of fresh
workers, and the table gives per scenario the median of the per-round ratios
working tree / baseline, with their range: about 1.00 means no measurable cost.

    python benchmarks/value_cache_off.py --baseline core-ready
    python benchmarks/value_cache_off.py --baseline core-ready --aa    # the noise
    python benchmarks/value_cache_off.py --baseline core-ready --quick

On a 2-core VM under a load of about 7 from other work (pinned with ``taskset -c 1``,
12 rounds in 3 epochs), the median ratios of the working tree to core-ready were 0.90-1.09
across the nine scenarios (load() on a hit 0.90, fan-out of 10,000 1.09, tree 1.02), and
those of the A/A control 0.95-1.16: the hook's cost is below this host's noise. What it adds
is per batch, not per key: one attribute read and one ``is None`` check, twice.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKER = REPO_ROOT / "benchmarks" / "_core_scenarios.py"
TIMED = (
    "fanout-1",
    "fanout-100",
    "fanout-10000",
    "load_many-10000",
    "cache-hit-gather-10000",
    "cache-hit-load-10000",
    "tree",
    "serial-latency",
    "max-batch",
)


# The worker reports the installed distribution's version; these copies are not installed.
_BOOTSTRAP = """
import importlib.metadata, runpy, sys
importlib.metadata.version = lambda distribution: "source"
sys.argv = [sys.argv[1], "worker", "project"]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


class Worker:
    def __init__(self, source: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(source)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            cwd=tempfile.gettempdir(),  # never the repository: PYTHONPATH decides
        )
        assert self.process.stdout is not None
        self.info = json.loads(self.process.stdout.readline())

    def run(self, scenario: str, warmup: int, reps: int) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        request = {"scenario": scenario, "warmup": warmup, "reps": reps}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self.process.stdout.readline())
        if answer["problems"] or answer["batching"]:
            raise RuntimeError(f"{scenario}: {answer['problems'] + answer['batching']}")
        return answer

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="core-ready", help="a git ref (tag, branch)")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument(
        "--aa", action="store_true", help="A/A control: the baseline against itself (the noise)"
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.epochs, args.reps = 4, 2, 1

    with tempfile.TemporaryDirectory(prefix="aiodataloader-baseline-") as folder:
        archive = subprocess.run(
            ["git", "archive", args.baseline, "aiodataloader"],
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        sources = {"baseline": Path(folder), "tree": Path(folder) if args.aa else REPO_ROOT}
        ratios: dict[str, list[float]] = {scenario: [] for scenario in TIMED}
        medians: dict[str, dict[str, list[float]]] = {
            s: {"baseline": [], "tree": []} for s in TIMED
        }
        per_epoch = max(1, args.rounds // args.epochs)
        for epoch in range(args.epochs):
            workers = {name: Worker(path) for name, path in sources.items()}
            try:
                for scenario in TIMED:
                    for name in workers:
                        workers[name].run(scenario, warmup=2, reps=0)
                    for round_number in range(per_epoch):
                        order = (
                            ["baseline", "tree"] if round_number % 2 == 0 else ["tree", "baseline"]
                        )
                        turn: dict[str, float] = {}
                        for name in order:
                            values = workers[name].run(scenario, 0, args.reps)["values"]
                            turn[name] = statistics.median(values[scenario])
                            medians[scenario][name].append(turn[name])
                        ratios[scenario].append(turn["tree"] / turn["baseline"])
            finally:
                for worker in workers.values():
                    worker.close()
            print(f"epoch {epoch + 1}/{args.epochs} done", flush=True)

    against = f"{args.baseline} (A/A)" if args.aa else "working tree"
    print(f"\n{against} / {args.baseline}, no value cache configured (lower is faster)")
    print(f"{'scenario':24} {'baseline':>10} {'tree':>10} {'ratio':>7}  range")
    for scenario in TIMED:
        low, high = min(ratios[scenario]), max(ratios[scenario])
        print(
            f"{scenario:24} {statistics.median(medians[scenario]['baseline']):10.1f} "
            f"{statistics.median(medians[scenario]['tree']):10.1f} "
            f"{statistics.median(ratios[scenario]):7.3f}  [{low:.2f}-{high:.2f}]"
        )


if __name__ == "__main__":
    main()
