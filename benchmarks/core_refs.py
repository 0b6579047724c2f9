"""The core at several git refs and the working tree, side by side in one run.

Each source (a git ref exported to a temporary folder, or the working tree) gets one worker
process that imports ``aiodataloader`` from it and runs the timed scenarios of
``_core_scenarios.py`` (the same scenario code for every source, with every rep checked). In a
round, every worker takes a turn of ``--reps`` timed reps, the first worker rotating from
round to round; ``--epochs`` sets of fresh workers split the rounds. The table gives per
scenario each source's median and, for each source, the median of its per-round ratios to
the first source, with their range. ``--aa`` adds a second worker of the first source: its
ratio shows the noise.

    python benchmarks/core_refs.py --refs 0.5.0=783ddda,pre-observe=282338d        # wall clock
    python benchmarks/core_refs.py --refs 0.5.0=783ddda,main=main --clock cpu      # CPU time
    python benchmarks/core_refs.py --refs 0.5.0=783ddda --hot --callgrind          # instructions

``--clock cpu`` times with ``time.process_time`` (the worker's CPU time), which other work
on a shared machine disturbs less than the wall clock. ``--callgrind`` counts instructions
under ``valgrind --tool=callgrind`` instead, of the timed regions only (the worker's clock
calls are where callgrind zeroes and dumps its counts): per source and scenario, one process
runs ``--cg-reps`` reps after a warm-up, and the table gives the median rep. The counts
repeat to a few parts in a thousand whatever else the machine runs, so they suit A/B
comparisons of small changes; they count work, not time (a cache miss costs one instruction
like any other).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SCENARIOS_FILE = REPO_ROOT / "benchmarks" / "_core_scenarios.py"
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
HOT = ("serial-latency", "fanout-1", "tree", "cache-hit-load-10000")
TREE = "tree"  # the name of the working tree in --refs

# The worker: imports the scenarios by path and aiodataloader from PYTHONPATH (the source),
# then answers one JSON request per line with the per-unit values of its reps. With argv
# [scenario, reps] it runs one warm-up and that many reps, and answers nothing (callgrind).
_WORKER = r"""
import asyncio, gc, importlib.util, json, sys, time
spec = importlib.util.spec_from_file_location("_core_scenarios", sys.argv[1])
scenarios = importlib.util.module_from_spec(spec)
sys.modules["_core_scenarios"] = scenarios
spec.loader.exec_module(scenarios)
if sys.argv[2] == "cpu":
    scenarios.perf_counter = time.process_time
elif sys.argv[2] == "callgrind":  # the timed region's start zeroes the counts, its end dumps
    marks = [0]
    def mark():
        marks[0] += 1
        time.thread_time_ns() if marks[0] % 2 else time.process_time_ns()
        return 0.0
    scenarios.perf_counter = mark
import aiodataloader
from aiodataloader import DataLoader
make = scenarios.loader_factory(DataLoader)
gc.collect()
gc.freeze()

def reps(name, count):
    scenario = scenarios.SCENARIOS[name]
    loop = asyncio.new_event_loop()
    try:
        values = []
        for _ in range(count):
            gc.collect()
            seconds = loop.run_until_complete(scenario.run(make, scenario.size))
            values.append(seconds * scenario.scale / scenario.per(scenario.size))
        return values
    finally:
        loop.close()

if len(sys.argv) > 3:
    reps(sys.argv[3], 1)
    reps(sys.argv[3], int(sys.argv[4]))
    sys.exit(0)
print(json.dumps({"file": aiodataloader.__file__}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    reps(request["scenario"], request["warmup"])
    print(json.dumps({"values": reps(request["scenario"], request["reps"])}), flush=True)
"""


def export(ref: str, folder: Path) -> Path:
    """The package at ``ref``, in a folder of its own; the working tree for ``tree``."""
    if ref == TREE:
        return REPO_ROOT
    target = folder / re.sub(r"[^A-Za-z0-9_.-]", "_", ref)
    target.mkdir()
    archive = subprocess.run(
        ["git", "archive", ref, "aiodataloader"], cwd=REPO_ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def worker_command(clock: str) -> list[str]:
    return [sys.executable, "-c", _WORKER, str(SCENARIOS_FILE), clock]


def worker_env(source: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(source), "PYTHONHASHSEED": "0"}


class Worker:
    def __init__(self, source: Path, clock: str) -> None:
        self.process = subprocess.Popen(
            worker_command(clock),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=worker_env(source),
            text=True,
            cwd=tempfile.gettempdir(),  # never the repository: PYTHONPATH decides
        )
        assert self.process.stdout is not None
        self.file = json.loads(self.process.stdout.readline())["file"]
        if not self.file.startswith(str(source)):
            raise RuntimeError(f"imported {self.file}, not from {source}")

    def run(self, scenario: str, warmup: int, reps: int) -> list[float]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        request = {"scenario": scenario, "warmup": warmup, "reps": reps}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{scenario}: the worker failed (a check, see above)")
        values: list[float] = json.loads(line)["values"]
        return values

    def close(self) -> None:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(30)
        self.process.stdout.close()


def timed(
    sources: dict[str, Path], scenarios: list[str], args: argparse.Namespace
) -> dict[str, dict[str, list[float]]]:
    """Per scenario and source, its round medians, in round order."""
    rounds: dict[str, dict[str, list[float]]] = {s: {n: [] for n in sources} for s in scenarios}
    names = list(sources)
    per_epoch = max(1, args.rounds // args.epochs)
    for epoch in range(args.epochs):
        workers = {name: Worker(path, args.clock) for name, path in sources.items()}
        try:
            for scenario in scenarios:
                for worker in workers.values():
                    worker.run(scenario, warmup=2, reps=0)
                for number in range(per_epoch):
                    shift = (epoch * per_epoch + number) % len(names)
                    for name in names[shift:] + names[:shift]:
                        values = workers[name].run(scenario, 0, args.reps)
                        rounds[scenario][name].append(statistics.median(values))
        finally:
            for worker in workers.values():
                worker.close()
        print(f"epoch {epoch + 1}/{args.epochs} done", file=sys.stderr, flush=True)
    return rounds


def instructions(source: Path, scenario: str, reps: int) -> list[int]:
    """Instructions of each timed region of ``reps`` reps of ``scenario``, after a warm-up
    rep: the worker's clock calls C functions at which callgrind zeroes its counts (the
    start) and dumps them (the end), one file per timed region."""
    with tempfile.TemporaryDirectory(prefix="aiodataloader-callgrind-") as folder:
        out = Path(folder) / "cg.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            "--zero-before=time_thread_time_ns",
            "--dump-before=time_process_time_ns",
            *worker_command("callgrind"),
            scenario,
            str(reps),
        ]
        done = subprocess.run(
            command, env=worker_env(source), capture_output=True, text=True, cwd=folder
        )
        if done.returncode != 0:
            raise RuntimeError(f"{scenario}: callgrind failed:\n{done.stderr[-2000:]}")
        counts = []
        for part in range(1, reps + 2):
            text = (Path(folder) / f"cg.out.{part}").read_text()
            found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
            if found is None:
                raise RuntimeError(f"{scenario}: no total in callgrind's part {part}")
            counts.append(int(found.group(1)))
    return counts[1:]  # the warm-up's region first


def counted(
    sources: dict[str, Path], scenarios: list[str], reps: int
) -> dict[str, dict[str, list[float]]]:
    """Per scenario and source, instructions per unit of one rep (a list of one)."""
    from _core_scenarios import SCENARIOS

    result: dict[str, dict[str, list[float]]] = {}
    for scenario in scenarios:
        per = SCENARIOS[scenario].per(SCENARIOS[scenario].size)
        result[scenario] = {}
        for name, path in sources.items():
            counts = instructions(path, scenario, reps)
            result[scenario][name] = [statistics.median(counts) / per]
            spread = (max(counts) - min(counts)) / min(counts)
            print(f"{scenario} {name}: {counts} ({spread:.2%})", file=sys.stderr, flush=True)
    return result


def table(rounds: dict[str, dict[str, list[float]]], unit_note: str) -> str:
    names = list(next(iter(rounds.values())))
    pairs = [(name, names[0]) for name in names[1:]]
    header = f"{'scenario':24}" + "".join(f"{name:>12}" for name in names)
    header += "".join(f"{a + '/' + b:>26}" for a, b in pairs)
    lines = [unit_note, header]
    for scenario, by_name in rounds.items():
        row = f"{scenario:24}" + "".join(
            f"{statistics.median(by_name[name]):12.1f}" for name in names
        )
        for a, b in pairs:
            ratios = [x / y for x, y in zip(by_name[a], by_name[b], strict=True)]
            cell = f"{statistics.median(ratios):.3f}"
            if len(ratios) > 1:
                cell += f" [{min(ratios):.2f}-{max(ratios):.2f}]"
            row += f"{cell:>26}"
        lines.append(row)
    return "\n".join(lines)


def parse_refs(text: str) -> dict[str, str]:
    """``label=ref,...`` (a ref alone is its own label) as {label: ref}, the working tree
    last whether it is named or not."""
    refs: dict[str, str] = {}
    for item in text.split(","):
        label, _, ref = item.partition("=")
        refs[label] = ref or label
    if TREE not in refs.values():
        refs[TREE] = TREE
    return refs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--refs",
        required=True,
        help="comma-separated git refs, each optionally labelled (label=ref); the first is "
        "the reference of the ratios; the working tree ('tree') comes last unless listed",
    )
    parser.add_argument("--scenarios", help=f"comma-separated subset (default: {TIMED})")
    parser.add_argument("--hot", action="store_true", help=f"only {', '.join(HOT)}")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--aa", action="store_true", help="a second worker of the first ref")
    parser.add_argument("--callgrind", action="store_true", help="instruction counts")
    parser.add_argument("--cg-reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="4 rounds in 2 epochs, 1 rep")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.epochs, args.reps = 4, 2, 1
    scenarios = list(HOT if args.hot else TIMED)
    if args.scenarios:
        scenarios = args.scenarios.split(",")
    refs = parse_refs(args.refs)
    with tempfile.TemporaryDirectory(prefix="aiodataloader-refs-") as folder:
        sources = {label: export(ref, Path(folder)) for label, ref in refs.items()}
        if args.aa:
            first = next(iter(sources))
            sources = {first: sources[first], f"{first}(A/A)": sources[first], **sources}
        if args.callgrind:
            result = counted(sources, scenarios, args.cg_reps)
            note = "instructions per unit (callgrind); ratios: each column / the first"
        else:
            result = timed(sources, scenarios, args)
            clock = "CPU time" if args.clock == "cpu" else "wall clock"
            note = (
                f"{clock}, ns/key, ns/call, ms/tree, us/load; median of {args.rounds} round "
                "medians; ratios: median of per-round ratios [range], each column / the first"
            )
    print(table(result, note))


if __name__ == "__main__":
    main()
