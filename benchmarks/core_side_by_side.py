"""Side by side: this project's DataLoader, aiodataloader 0.4.3, Strawberry's DataLoader and a
floor (the least work with 0.4.3's semantics), each in its own virtualenv and measured by pyperf.

    nox -s bench                  # full run (or: python benchmarks/core_side_by_side.py)
    nox -s bench -- --quick       # smoke run, fewer processes and values

For each scenario, the implementations take turns (the first one rotating from scenario to
scenario); each turn is one pyperf run of ``_core_scenarios.py`` in that implementation's
virtualenv. The table gives each implementation's median and the ratios of the medians. Every
rep checks the values and that the batches are 0.4.3's; a failed check makes the cell ERROR and
the exit status 1. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Sequence
from pathlib import Path

import pyperf
from _core_scenarios import SCENARIOS  # the script next to this one (sys.path[0])

BENCHMARKS = Path(__file__).resolve().parent
REPO_ROOT = BENCHMARKS.parent
# implementation -> (its virtualenv, what pip installs there besides pyperf)
IMPLEMENTATIONS = {
    "upstream": ("upstream", ["aiodataloader==0.4.3"]),
    "project": ("project", ["-e", str(REPO_ROOT)]),
    "strawberry": ("strawberry", ["strawberry-graphql==0.341.2"]),
    "floor": ("project", ["-e", str(REPO_ROOT)]),  # standard library only: any virtualenv
}
RATIOS = [("project", "upstream"), ("project", "floor"), ("strawberry", "project")]
PYPERF_FULL = ["--processes", "6", "--values", "3", "--warmups", "1", "--min-time", "0.05"]
PYPERF_QUICK = ["--processes", "2", "--values", "2", "--warmups", "1", "--min-time", "0.02"]
# Deterministic scenarios: one value of one rep is the answer.
PYPERF_ONCE = ["--processes", "1", "--values", "1", "--warmups", "1", "--loops", "1"]


def virtualenvs(names: list[str], root: Path) -> dict[str, Path]:
    """The Python of each implementation's virtualenv, made (or updated) with pip."""
    pythons: dict[str, Path] = {}
    for name in names:
        directory, requirement = IMPLEMENTATIONS[name]
        path = root / f"{directory}-py{sys.version_info.major}.{sys.version_info.minor}"
        python = path / "bin" / "python"
        if python in pythons.values():
            pythons[name] = python
            continue
        if not python.exists():
            print(f"creating {path}", flush=True)
            venv.create(path, with_pip=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "pyperf", *requirement], check=True, cwd=tempfile.gettempdir())
        pythons[name] = python
    return pythons


def measure(
    python: Path, impl: str, scenario: str, size: int, options: list[str], out: Path
) -> pyperf.Benchmark | str:
    """One pyperf run: its benchmark, or why it failed (the last lines of its errors)."""
    command = [str(python), str(BENCHMARKS / "_core_scenarios.py"), "--impl", impl]
    command += ["--scenario", scenario, "--size", str(size), "--quiet", "-o", str(out), *options]
    # pyperf gives its workers a clean environment: no PYTHONPATH brings in another package.
    done = subprocess.run(command, capture_output=True, text=True, cwd=out.parent)
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        return " | ".join(lines[-2:])
    return pyperf.Benchmark.load(str(out))


def number(value: float) -> str:
    return f"{value:.0f}" if value >= 1000 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: few processes, values")
    parser.add_argument("--impls", default=",".join(IMPLEMENTATIONS), help="columns")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="rows")
    parser.add_argument(
        "--venvs", type=Path, default=Path(tempfile.gettempdir()) / "aiodataloader-bench"
    )
    parser.add_argument(
        "--out", type=Path, help="folder of pyperf files (default: benchmarks/results/)"
    )
    parser.add_argument("pyperf", nargs="*", help="after --: options for every timed pyperf run")
    args = parser.parse_args(argv)
    impls, scenarios = args.impls.split(","), args.scenarios.split(",")
    unknown = set(impls) - set(IMPLEMENTATIONS) | set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown implementation or scenario: {', '.join(sorted(unknown))}")
    started = datetime.datetime.now(datetime.timezone.utc)
    out = args.out or BENCHMARKS / "results" / f"core_side_by_side-{started:%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    pythons = virtualenvs(impls, args.venvs)

    began = time.monotonic()
    timed = [*(PYPERF_QUICK if args.quick else PYPERF_FULL), *args.pyperf]
    cells: dict[tuple[str, str], pyperf.Benchmark | str] = {}
    for turn, name in enumerate(scenarios):
        scenario = SCENARIOS[name]
        size = (args.quick and scenario.quick_size) or scenario.size
        for impl in impls[turn % len(impls) :] + impls[: turn % len(impls)]:
            file = out / f"{name}-{impl}.json"
            file.unlink(missing_ok=True)
            options = PYPERF_ONCE if scenario.once else timed
            cells[name, impl] = measure(pythons[impl], impl, name, size, options, file)
        print(f"  {name:<24}{time.monotonic() - began:6.0f} s", flush=True)

    print(f"\nPython {platform.python_version()} | {platform.platform()} | {os.cpu_count()} CPUs")
    print(
        f"{started:%Y-%m-%d %H:%M} UTC, {time.monotonic() - began:.0f} s, pyperf {' '.join(timed)}"
    )
    print("median per implementation (lower is better); a/b = ratio of the medians; ± = the")
    print("largest relative standard deviation in the row; ERROR = a check failed (below)\n")
    ratios = [(a, b) for a, b in RATIOS if a in impls and b in impls]
    header = f"{'scenario':<24}{'unit':<9}" + "".join(f"{i:>12}" for i in impls)
    header += "".join(f"{a + '/' + b:>20}" for a, b in ratios) + f"{'±':>7}"
    print(header + "\n" + "-" * len(header))
    errors: list[str] = []
    for name in scenarios:
        scenario = SCENARIOS[name]
        medians: dict[str, float] = {}
        line, spread = f"{name:<24}{scenario.unit:<9}", 0.0
        for impl in impls:
            cell = cells[name, impl]
            if isinstance(cell, str):
                errors.append(f"  ERROR {name} / {impl}: {cell}")
                line += f"{'ERROR':>12}"
                continue
            medians[impl] = cell.median() * scenario.scale
            if cell.get_nvalue() > 1:
                spread = max(spread, cell.stdev() / cell.mean())
            line += f"{number(medians[impl]):>12}"
        for a, b in ratios:
            ratio = medians[a] / medians[b] if a in medians and medians.get(b) else None
            line += f"{f'{ratio:.2f}x' if ratio is not None else '-':>20}"
        print(line + (f"{spread:>6.0%}" if spread else f"{'-':>7}"))
    print("\n".join(errors) or "\nvalues and batches as 0.4.3 in every rep of every cell")
    print(f"pyperf files: {out} (python -m pyperf compare_to A.json B.json)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
