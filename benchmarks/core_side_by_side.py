"""Side by side: this project's DataLoader, aiodataloader 0.4.3 and Strawberry's DataLoader.

Our package and 0.4.3 share the import name ``aiodataloader``, so each implementation gets
its own virtualenv (same Python as this script) and its own worker process
(``_core_scenarios.py``, JSON lines over stdin/stdout). For each scenario the workers take
turns in interleaved rounds, the starting worker rotating every round; the rounds are split
into epochs, and each epoch starts fresh workers. Every rep checks the values and that the
batches (count, sizes, key order) are the ones 0.4.3 makes. The table gives per scenario the
median per implementation and the median over rounds of the paired per-round ratios, then
the targets of issue 3 with PASS/FAIL. See benchmarks/README.md.

    python benchmarks/core_side_by_side.py --setup-only   # create the virtualenvs only
    python benchmarks/core_side_by_side.py                # full run, about 4 minutes
    python benchmarks/core_side_by_side.py --quick        # smoke run, under a minute
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _core_scenarios import SCENARIOS, Scenario

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKER_SCRIPT = Path(__file__).resolve().parent / "_core_scenarios.py"
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
DEFAULT_VENVS = Path(os.environ.get("TMPDIR") or "/tmp") / "aiodataloader-bench-ours"

UPSTREAM_VERSION = "0.4.3"
STRAWBERRY_VERSION = "0.341.2"


@dataclass(frozen=True)
class Implementation:
    name: str  # column label
    venv: str  # virtualenv directory name
    kind: str  # worker argument: upstream, project or strawberry
    requirement: list[str]
    distribution: str
    version: str | None  # the exact version required, if any


IMPLEMENTATIONS = {
    impl.name: impl
    for impl in [
        Implementation(
            "upstream",
            "upstream",
            "upstream",
            [f"aiodataloader=={UPSTREAM_VERSION}"],
            "aiodataloader",
            UPSTREAM_VERSION,
        ),
        Implementation("project", "project", "project", ["-e", str(REPO_ROOT)], "", None),
        Implementation(
            "strawberry",
            "strawberry",
            "strawberry",
            [f"strawberry-graphql=={STRAWBERRY_VERSION}"],
            "strawberry-graphql",
            STRAWBERRY_VERSION,
        ),
        # An A/A noise control: a second 0.4.3 worker. Its ratio to upstream shows the noise.
        Implementation(
            "upstream-aa",
            "upstream",
            "upstream",
            [f"aiodataloader=={UPSTREAM_VERSION}"],
            "aiodataloader",
            UPSTREAM_VERSION,
        ),
    ]
}

# (numerator, denominator) of the ratio columns, when both are in the run.
RATIOS = [("project", "upstream"), ("strawberry", "project"), ("upstream-aa", "upstream")]

# Targets of issue 3: project/upstream, median of the per-round paired ratios, at most this.
# Memory is deterministic but for a few one-off allocations (a few hundred bytes per loader,
# against 24 MB for 100,000 keys), so its ratio is compared within MEMORY_TOLERANCE.
MEMORY_TOLERANCE = 0.001
TARGETS = {
    "fanout-1": 0.85,
    "fanout-100": 0.85,
    "fanout-10000": 0.85,
    "load_many-10000": 0.85,
    "serial-latency": 0.70,
    "cache-hit-load-10000": 0.75,
    "memory-retained": 1.0,
}


@dataclass(frozen=True)
class Settings:
    rounds: int
    epochs: int
    reps: int
    warmup: int
    once_reps: int  # reps of the deterministic scenarios (memory, batch-window), one round
    quick: bool
    once_warmup: int = 1

    @staticmethod
    def from_args(args: argparse.Namespace) -> Settings:
        quick = bool(args.quick)

        def pick(given: int | None, full: int, smoke: int) -> int:
            return given if given is not None else smoke if quick else full

        rounds = pick(args.rounds, 20, 4)
        epochs = min(rounds, pick(args.epochs, 4, 2))
        reps, warmup = pick(args.reps, 2, 1), pick(args.warmup, 2, 1)
        return Settings(rounds, epochs, reps, warmup, once_reps=1 if quick else 2, quick=quick)

    def size(self, scenario: Scenario) -> int:
        return scenario.quick_size if self.quick and scenario.quick_size else scenario.size


# -- virtualenvs -------------------------------------------------------------------------

PROBE = """
import importlib, importlib.metadata, json, sys
module = importlib.import_module(sys.argv[1])
print(json.dumps({"python": sys.version, "file": module.__file__,
                  "version": importlib.metadata.version(sys.argv[2])}))
"""


def venv_python(venvs: Path, impl: Implementation) -> Path:
    return venvs / impl.venv / "bin" / "python"


def probe(python: Path, impl: Implementation) -> dict[str, str] | None:
    """What ``python`` imports for ``impl``, or None when it cannot import it."""
    if not python.exists():
        return None
    module = "strawberry.dataloader" if impl.kind == "strawberry" else "aiodataloader"
    distribution = impl.distribution or "aiodataloader"
    done = subprocess.run(
        [str(python), "-I", "-c", PROBE, module, distribution],
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    if done.returncode != 0:
        return None
    found: dict[str, str] = json.loads(done.stdout)
    return found


def probe_problem(impl: Implementation, found: dict[str, str] | None) -> str | None:
    """Why the virtualenv of ``impl`` cannot be used as it is, or None."""
    if found is None:
        return "missing, or the package does not import"
    if found["python"] != sys.version:
        return f"Python {found['python'].split()[0]}, not this script's {platform.python_version()}"
    in_repo = Path(found["file"]).resolve().is_relative_to(REPO_ROOT)
    if impl.kind == "project" and not in_repo:
        return f"imports aiodataloader from {found['file']}, not from {REPO_ROOT}"
    if impl.kind == "upstream" and in_repo:
        return f"imports aiodataloader from this repository ({found['file']})"
    if impl.version is not None and found["version"] != impl.version:
        return f"has version {found['version']}, not {impl.version}"
    return None


def ensure_venv(venvs: Path, impl: Implementation) -> dict[str, str]:
    python = venv_python(venvs, impl)
    problem = probe_problem(impl, probe(python, impl))
    if problem is None:
        return probe(python, impl) or {}
    print(f"setting up {venvs / impl.venv} ({problem}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venvs / impl.venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *impl.requirement],
        check=True,
        cwd=tempfile.gettempdir(),
    )
    found = probe(python, impl)
    problem = probe_problem(impl, found)
    if found is None or problem is not None:
        raise SystemExit(f"{venvs / impl.venv}: still unusable after setup: {problem}")
    return found


# -- workers -----------------------------------------------------------------------------


class Worker:
    """One implementation's worker process."""

    def __init__(self, impl: Implementation, python: Path, cpu: int | None) -> None:
        self.impl = impl
        command = [str(python), "-I", str(WORKER_SCRIPT), "worker", impl.kind]
        if cpu is not None:
            command = ["taskset", "--cpu-list", str(cpu), *command]
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed by close())
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            cwd=tempfile.gettempdir(),
        )
        self.info: dict[str, str] = self._read()

    def _read(self) -> Any:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            self.stderr.seek(0)
            raise RuntimeError(f"worker {self.impl.name} died:\n{self.stderr.read()[-3000:]}")
        return json.loads(line)

    def run(self, scenario: str, size: int, warmup: int, reps: int) -> dict[str, Any]:
        stdin: IO[str] | None = self.process.stdin
        assert stdin is not None
        request = {"scenario": scenario, "size": size, "warmup": warmup, "reps": reps}
        stdin.write(json.dumps(request) + "\n")
        stdin.flush()
        reply: dict[str, Any] = self._read()
        return reply

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.stderr.close()


# -- the run -----------------------------------------------------------------------------


@dataclass
class Cell:
    """One metric of one implementation: the timed reps of each round, and what went wrong."""

    rounds: list[list[float]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    batching: list[str] = field(default_factory=list)

    def add(self, values: list[float] | None, reply: dict[str, Any]) -> None:
        if values is not None:
            self.rounds.append(values)
        self.problems += [p for p in reply["problems"] if p not in self.problems]
        self.batching += [b for b in reply["batching"] if b not in self.batching]

    def round_values(self) -> list[float]:
        """One number per round: the best of the turn's reps. Noise here (another process
        taking the CPU) only ever adds time, so the best rep is the cleanest estimate."""
        return [min(r) if r else float("nan") for r in self.rounds]

    def median(self) -> float | None:
        """The median over rounds of each round's best rep (what the ratios are made of)."""
        values = [v for v in self.round_values() if v == v]  # not NaN
        return statistics.median(values) if values else None

    def samples(self) -> list[float]:
        return [v for r in self.rounds for v in r]


def cpu_busy_seconds() -> float:
    """CPU seconds spent by the whole machine so far (all CPUs), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return float("nan")
    idle = int(fields[3]) + int(fields[4])
    return (sum(int(f) for f in fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def run_benchmark(
    impls: list[Implementation],
    pythons: dict[str, Path],
    scenarios: list[Scenario],
    settings: Settings,
    cpu: int | None,
) -> tuple[dict[str, dict[str, Cell]], dict[str, dict[str, str]]]:
    cells = {m: {i.name: Cell() for i in impls} for s in scenarios for m, _ in s.metrics}
    infos: dict[str, dict[str, str]] = {}
    per_epoch = [len(range(e, settings.rounds, settings.epochs)) for e in range(settings.epochs)]
    round_number = 0
    for epoch, rounds in enumerate(per_epoch):
        workers = [Worker(impl, pythons[impl.name], cpu) for impl in impls]
        try:
            for worker in workers:
                infos[worker.impl.name] = worker.info
            for scenario in scenarios:
                if scenario.once and epoch > 0:
                    continue
                size, began = settings.size(scenario), time.monotonic()
                n_rounds, reps = (
                    (1, settings.once_reps) if scenario.once else (rounds, settings.reps)
                )
                warmup = settings.once_warmup if scenario.once else settings.warmup
                for worker in workers:  # warm-ups: checked, not kept
                    reply = worker.run(scenario.name, size, warmup, 0)
                    for metric, _ in scenario.metrics:
                        cells[metric][worker.impl.name].add(None, reply)
                for r in range(n_rounds):
                    shift = (round_number + r) % len(workers)
                    for worker in workers[shift:] + workers[:shift]:
                        reply = worker.run(scenario.name, size, 0, reps)
                        for metric, _ in scenario.metrics:
                            values = reply["values"][metric]
                            cells[metric][worker.impl.name].add(values, reply)
                print(
                    f"  epoch {epoch + 1}/{len(per_epoch)}: {scenario.name:<24}"
                    f"{time.monotonic() - began:5.1f} s",
                    flush=True,
                )
        finally:
            for worker in workers:
                worker.close()
        round_number += rounds
    return cells, infos


# -- the table ---------------------------------------------------------------------------


def paired_ratios(num: Cell, den: Cell) -> list[float]:
    return [
        a / b
        for a, b in zip(num.round_values(), den.round_values(), strict=True)
        if b > 0 and a == a and b == b  # skip empty rounds (NaN)
    ]


def fmt(value: float) -> str:
    if value != value:
        return "-"
    if value >= 1000:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def cell_text(cell: Cell) -> str:
    median = cell.median()
    if cell.problems or median is None:
        return "ERROR"
    text = fmt(median)
    return text + " !" if cell.batching else text


def ratio_text(ratios: list[float]) -> str:
    if not ratios:
        return "-"
    median = statistics.median(ratios)
    if len(ratios) == 1 or min(ratios) == max(ratios):
        return f"{median:.2f}x"
    return f"{median:.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]"


def summarize(
    cells: dict[str, dict[str, Cell]], scenarios: list[Scenario], names: list[str]
) -> dict[str, Any]:
    """Per metric: median per implementation and the paired ratios; for the JSON and table."""
    rows: dict[str, Any] = {}
    for scenario in scenarios:
        for metric, unit in scenario.metrics:
            row: dict[str, Any] = {"unit": unit, "timed": scenario.timed, "impls": {}}
            for name in names:
                cell = cells[metric][name]
                samples = cell.samples()
                row["impls"][name] = {
                    "median": cell.median(),
                    "median_of_all_reps": statistics.median(samples) if samples else None,
                    "min": min(samples) if samples else None,
                    "rounds": cell.rounds,
                    "problems": cell.problems,
                    "batching": cell.batching,
                }
            row["ratios"] = {
                f"{a}/{b}": paired_ratios(cells[metric][a], cells[metric][b])
                for a, b in RATIOS
                if a in names and b in names
            }
            rows[metric] = row
    return rows


def print_table(rows: dict[str, Any], cells: dict[str, dict[str, Cell]], names: list[str]) -> None:
    ratio_names = [f"{a}/{b}" for a, b in RATIOS if a in names and b in names]
    header = (
        f"{'scenario':<24}{'unit':<9}"
        + "".join(f"{n:>12}" for n in names)
        + "".join(f"{r:>26}" for r in ratio_names)
    )
    print("\nMEDIAN over rounds of each round's best rep (lower is better); a/b = median over")
    print("rounds of the paired per-round ratio [min-max over rounds]; '!' = batching differs")
    print("from 0.4.3, ERROR = wrong values or an exception")
    print(header)
    print("-" * len(header))
    for metric, row in rows.items():
        line = f"{metric:<24}{row['unit']:<9}"
        line += "".join(f"{cell_text(cells[metric][n]):>12}" for n in names)
        line += "".join(f"{ratio_text(row['ratios'][r]):>26}" for r in ratio_names)
        print(line)
    for metric in rows:
        for name in names:
            cell = cells[metric][name]
            for text in cell.problems:
                print(f"  ERROR {metric} / {name}: {text}")
            for text in cell.batching:
                print(f"  !!! BATCHING DIFFERS FROM 0.4.3: {metric} / {name}: {text}")


def check_targets(
    rows: dict[str, Any], cells: dict[str, dict[str, Cell]], names: list[str]
) -> list[tuple[str, bool | None, str]]:
    """(target, PASS/FAIL or None when not measured, the evidence)."""
    results: list[tuple[str, bool | None, str]] = []
    for metric, limit in TARGETS.items():
        ratios = rows.get(metric, {}).get("ratios", {}).get("project/upstream", [])
        target = f"{metric}: project/upstream <= {limit:.2f}"
        if not ratios:
            results.append((target, None, "not measured"))
            continue
        median = statistics.median(ratios)
        if metric.startswith("memory-"):
            impls = rows[metric]["impls"]
            evidence = f"{median:.4f}x ({impls['project']['median']:.2f} against "
            evidence += f"{impls['upstream']['median']:.2f} {rows[metric]['unit']})"
            results.append((target, median <= limit + MEMORY_TOLERANCE, evidence))
        else:
            results.append((target, median <= limit, f"{median:.2f}x"))
    if "strawberry" in names and "project" in names:
        slower = {
            metric: statistics.median(row["ratios"]["strawberry/project"])
            for metric, row in rows.items()
            if row["timed"] and row["ratios"].get("strawberry/project")
        }
        losers = [f"{m} {r:.2f}x" for m, r in slower.items() if r <= 1.0]
        closest = min(slower.items(), key=lambda item: item[1], default=None)
        evidence = (
            "not slower in: " + ", ".join(losers)
            if losers
            else f"closest: {closest[0]} {closest[1]:.2f}x"
            if closest
            else "not measured"
        )
        results.append(
            (
                "Strawberry slower than project in every timed scenario",
                not losers if slower else None,
                evidence,
            )
        )
    differs = [
        f"{metric}/{name}"
        for metric in rows
        for name in names
        if cells[metric][name].batching or cells[metric][name].problems
    ]
    results.append(
        (
            "values correct and batching identical to 0.4.3 everywhere",
            not differs,
            "differs: " + ", ".join(differs) if differs else "every rep of every cell",
        )
    )
    return results


def print_targets(targets: list[tuple[str, bool | None, str]]) -> None:
    print("\nTARGETS (issue 3; median of the per-round paired ratios of this run)")
    for target, ok, evidence in targets:
        verdict = "-" if ok is None else "PASS" if ok else "FAIL"
        print(f"  {verdict:<5} {target:<58} {evidence}")


# -- main --------------------------------------------------------------------------------


def idle_jiffies() -> dict[int, int]:
    """Idle time so far of each CPU, from /proc/stat (empty when unavailable)."""
    idle: dict[int, int] = {}
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return idle
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            idle[int(name[3:])] = int(fields[3]) + int(fields[4])
    return idle


def pick_cpu(requested: int | None, pin: bool) -> int | None:
    """The CPU to pin the workers to: the requested one, or the one idlest over one second
    (on a shared machine, not the CPU another pinned benchmark is using)."""
    if not pin or shutil.which("taskset") is None or not hasattr(os, "sched_getaffinity"):
        return None
    if requested is not None:
        return requested
    allowed = sorted(os.sched_getaffinity(0))
    first = idle_jiffies()
    time.sleep(1.0)
    last = idle_jiffies()
    idle = {cpu: last[cpu] - first[cpu] for cpu in allowed if cpu in first and cpu in last}
    return max(idle, key=lambda cpu: (idle[cpu], cpu)) if idle else allowed[-1]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: few rounds, < 1 min")
    parser.add_argument("--setup-only", action="store_true", help="create the venvs and stop")
    parser.add_argument("--venvs", type=Path, default=DEFAULT_VENVS, help="virtualenv directory")
    parser.add_argument("--rounds", type=int, help="rounds per scenario (default 20; quick 4)")
    parser.add_argument("--epochs", type=int, help="fresh-worker epochs (default 4; quick 2)")
    parser.add_argument("--reps", type=int, help="timed reps per turn (default 2; quick 1)")
    parser.add_argument("--warmup", type=int, help="warm-up reps per worker, scenario, epoch")
    parser.add_argument(
        "--impls",
        default="upstream,project,strawberry",
        help="columns, from: " + ", ".join(IMPLEMENTATIONS) + " (upstream-aa: an A/A control)",
    )
    parser.add_argument("--scenarios", help="comma-separated subset of: " + ", ".join(SCENARIOS))
    parser.add_argument("--no-pin", action="store_true", help="do not pin workers to one CPU")
    parser.add_argument("--cpu", type=int, help="the CPU to pin to (default: the idlest)")
    parser.add_argument("--json", type=Path, help="results file (default benchmarks/results/)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n.strip() for n in args.impls.split(",") if n.strip()]
    unknown = [n for n in names if n not in IMPLEMENTATIONS]
    chosen = args.scenarios.split(",") if args.scenarios else list(SCENARIOS)
    unknown += [s for s in chosen if s not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown implementation or scenario: {', '.join(unknown)}")
    impls = [IMPLEMENTATIONS[n] for n in names]
    scenarios = [SCENARIOS[s] for s in chosen]
    settings = Settings.from_args(args)

    venvs: Path = args.venvs
    venvs.mkdir(parents=True, exist_ok=True)
    found = {impl.venv: ensure_venv(venvs, impl) for impl in impls}
    pythons = {impl.name: venv_python(venvs, impl) for impl in impls}
    for impl in impls:
        print(f"  {impl.name:<12} {found[impl.venv]['version']:<9} {found[impl.venv]['file']}")
    if args.setup_only:
        return 0

    cpu = pick_cpu(args.cpu, not args.no_pin)
    started = datetime.datetime.now(datetime.timezone.utc)
    wall, busy, own = time.monotonic(), cpu_busy_seconds(), own_cpu_seconds()
    cells, infos = run_benchmark(impls, pythons, scenarios, settings, cpu)
    wall = time.monotonic() - wall
    foreign = (cpu_busy_seconds() - busy - (own_cpu_seconds() - own)) / wall

    rows = summarize(cells, scenarios, names)
    print(
        f"\nPython {platform.python_version()} | {platform.platform()} | CPUs {os.cpu_count()}, "
        f"workers pinned to {cpu if cpu is not None else 'none'} | {started:%Y-%m-%d %H:%M} UTC"
    )
    print(
        f"{settings.rounds} rounds in {settings.epochs} epochs of fresh workers x {settings.reps} "
        f"reps, {settings.warmup} warm-up reps per worker and scenario and epoch; memory and "
        f"batch-window: 1 round of {settings.once_reps} reps | {wall:.0f} s | other processes: "
        f"{foreign:.2f} cores on average"
    )
    for name in names:
        info = infos[name]
        print(f"  {name:<12} {info['module']} {info['version']}  {info['file']}")
    print_table(rows, cells, names)
    targets = check_targets(rows, cells, names)
    print_targets(targets)

    path = args.json or RESULTS_DIR / f"core_side_by_side-{started:%Y%m%d-%H%M%S}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    results = {
        "started": started.isoformat(),
        "wall_seconds": wall,
        "foreign_cpu_cores": foreign,
        "python": sys.version,
        "platform": platform.platform(),
        "pinned_cpu": cpu,
        "settings": vars(settings),
        "implementations": infos,
        "metrics": rows,
        "targets": [{"target": t, "pass": ok, "evidence": e} for t, ok, e in targets],
    }
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote {path}")
    errors = any(cells[m][n].problems for m in cells for n in names)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
