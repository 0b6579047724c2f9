"""What the self-wait guard costs where a batch function suspends, at git refs and the
working tree, in instructions (``valgrind --tool=callgrind``, timed regions only).

    python benchmarks/guard_tradeoff.py --refs main=d039cf5

Two measurements, each a median of 3 reps after a warm-up:

- ``suspending``: 300 serial loads whose batch function awaits ``asyncio.sleep(0)`` three
  times; instructions per load.
- ``hits-while-suspended``: 20 passes of ``load()`` over 1,000 cached keys while a batch
  function of the same loader is suspended; instructions per hit.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from core_refs import export, parse_refs, worker_env  # the script next to this one (sys.path[0])

# Marks the timed region as core_refs.py's callgrind worker does: callgrind zeroes its
# counts at time.thread_time_ns() and dumps them at time.process_time_ns().
_SCRIPT = r"""
import asyncio, gc, sys, time
from aiodataloader import DataLoader

async def suspending():
    async def fn(keys):
        for _ in range(3):
            await asyncio.sleep(0)
        return keys
    loader = DataLoader(fn)
    time.thread_time_ns()
    for key in range(300):
        assert await loader.load(key) == key
    time.process_time_ns()

async def hits_while_suspended():
    release = asyncio.Event()
    async def fn(keys):
        if keys == [-1]:
            await release.wait()
        return keys
    loader = DataLoader(fn)
    await loader.load_many(range(1000))
    pending = loader.load(-1)
    for _ in range(3):
        await asyncio.sleep(0)  # its batch function is suspended now
    load = loader.load
    time.thread_time_ns()
    for _ in range(20):
        futures = [load(key) for key in range(1000)]
    time.process_time_ns()
    release.set()
    assert await pending == -1
    assert [future.result() for future in futures] == list(range(1000))

scenario = {"suspending": suspending, "hits-while-suspended": hits_while_suspended}[sys.argv[1]]
gc.collect()
gc.freeze()
for _ in range(4):  # a warm-up, then the reps
    asyncio.run(scenario())
"""
PER = {"suspending": 300, "hits-while-suspended": 20_000}


def counts(source: Path, scenario: str) -> list[int]:
    with tempfile.TemporaryDirectory(prefix="aiodataloader-callgrind-") as folder:
        out = Path(folder) / "cg.out"
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                "--zero-before=time_thread_time_ns",
                "--dump-before=time_process_time_ns",
                sys.executable,
                "-c",
                _SCRIPT,
                scenario,
            ],
            env=worker_env(source),
            capture_output=True,
            text=True,
            cwd=folder,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{scenario}: failed:\n{done.stderr[-2000:]}")
        totals = []
        for part in range(2, 5):  # part 1 is the warm-up's region
            text = (Path(folder) / f"cg.out.{part}").read_text()
            found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
            if found is None:
                raise RuntimeError(f"{scenario}: no total in callgrind's part {part}")
            totals.append(int(found.group(1)))
    return totals


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refs", required=True, help="label=ref,...; the working tree last")
    args = parser.parse_args(argv)
    refs = parse_refs(args.refs)
    with tempfile.TemporaryDirectory(prefix="aiodataloader-refs-") as folder:
        sources = {label: export(ref, Path(folder)) for label, ref in refs.items()}
        print(f"{'scenario':24}" + "".join(f"{label:>14}" for label in sources))
        for scenario, per in PER.items():
            row = f"{scenario:24}"
            for source in sources.values():
                row += f"{statistics.median(counts(source, scenario)) / per:14,.0f}"
            print(row, flush=True)


if __name__ == "__main__":
    main()
