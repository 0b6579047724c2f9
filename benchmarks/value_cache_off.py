"""The core with no value cache configured, side by side with a baseline git ref.

A loader without ``value_cache=`` must cost what it cost before the value cache existed.
This is ``core_refs.py`` with one baseline: the working tree against ``--baseline`` (a git
ref), every timed core scenario, turns interleaved in one run; ``--aa`` runs a second worker
of the baseline to show the noise.

    python benchmarks/value_cache_off.py --baseline 1093cec^1   # main before the value cache
    python benchmarks/value_cache_off.py --baseline 1093cec^1 --aa    # the noise
    python benchmarks/value_cache_off.py --baseline 1093cec^1 --quick --clock cpu

With the earlier version of this script, on a 2-core VM under a load of about 7 from other
work (pinned with ``taskset -c 1``, 12 rounds in 3 epochs), the median ratios of the working
tree to the core before the value cache were 0.90-1.09 across the nine scenarios (load() on a
hit 0.90, fan-out of 10,000 1.09, tree 1.02), and those of the A/A control 0.95-1.16: the
hook's cost is below this host's noise. What it adds is per batch, not per key: one
attribute read and one ``is None`` check, twice.
"""

from __future__ import annotations

import argparse

from core_refs import main as compare_refs  # the script next to this one (sys.path[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="a git ref (commit, tag, branch)")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument(
        "--aa", action="store_true", help="A/A control: the baseline against itself (the noise)"
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    options = ["--refs", args.baseline, "--clock", args.clock]
    options += ["--rounds", str(args.rounds), "--epochs", str(args.epochs)]
    options += ["--reps", str(args.reps)]
    compare_refs(options + ["--aa"] * args.aa + ["--quick"] * args.quick)


if __name__ == "__main__":
    main()
