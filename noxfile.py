"""Every check CI runs, and the demo. Needs nox only (``pipx install nox``).

    nox                                # lint, typing, the tests on each Python 3.10-3.13
    nox -s tests-3.12 -- -k loader     # one Python, some tests
    nox -s demo                        # the blog demo (``-- --serve`` keeps it serving)
    nox -s bench                       # the core against 0.4.3 and Strawberry (pyperf)
    nox -s compat_pydantic_resolve     # pydantic-resolve 6.3.0's released tests, on this tree

With ``CI`` set in the environment, a missing interpreter fails the run instead of skipping.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typing", "tests"]
nox.options.reuse_venv = "yes"

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
PYPROJECT = nox.project.load_toml("pyproject.toml")

PYDANTIC_RESOLVE = "pydantic-resolve==6.3.0"


def groups(*names: str) -> list[str]:
    return [req for name in names for req in nox.project.dependency_groups(PYPROJECT, name)]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite, once per Python."""
    session.install("-e", ".[fastapi]", *groups("test"))
    if session.python == PYTHONS[-1] and not session.posargs:
        # The full run on the newest Python also holds coverage to the floor in pyproject.toml.
        session.run("python", "-m", "coverage", "run", "-m", "pytest")
        session.run("python", "-m", "coverage", "report")
    else:
        session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PYTHONS[1])
def lint(session: nox.Session) -> None:
    """ruff: lint and format."""
    session.install(*groups("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHONS[1])
def typing(session: nox.Session) -> None:
    """mypy --strict on everything, pyright strict on the typing tests."""
    session.install("-e", ".[fastapi]", *groups("test", "lint", "bench"))
    session.run("mypy")
    session.run("pyright")


@nox.session(default=False)
def demo(session: nox.Session) -> None:
    """The blog demo on a real uvicorn server: SQL queries and latency, naive against loaders.
    ``nox -s demo -- --serve`` keeps serving afterwards; ``-- --quick`` sends fewer requests."""
    session.install("-e", ".[fastapi]", *groups("demo"))
    session.run("python", "-m", "demo", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """The core side by side (benchmarks/README.md); arguments go to the script."""
    session.install(*groups("bench"))
    session.run("python", "benchmarks/core_side_by_side.py", *session.posargs)


@nox.session(python=PYTHONS[1], default=False)
def compat_pydantic_resolve(session: nox.Session) -> None:
    """pydantic-resolve 6.3.0's own test suite (from its sdist on PyPI), with this project
    installed over the aiodataloader 0.4.3 it pins."""
    sdists = Path(session.create_tmp()) / "sdist"
    session.run(
        "python", "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary=:all:",
        "--dest", str(sdists), PYDANTIC_RESOLVE,
    )  # fmt: skip
    [archive] = sdists.glob("*.tar.gz")
    with tarfile.open(archive) as sdist:
        sdist.extractall(sdists, filter="data")
    [source] = (path for path in sdists.iterdir() if path.is_dir())
    if not (source / "tests").is_dir():
        session.error(f"{archive.name} has no tests/ folder")
    # Its own test dependencies, as its CI installs them, then this tree over its pin.
    session.install(f"{source}[dev]")
    session.install("--no-deps", "-e", ".")
    with session.chdir(source):
        session.run("python", "-m", "pytest", "-p", "no:cacheprovider", "tests", *session.posargs)
