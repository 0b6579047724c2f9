"""Every ```python block of README.md is tested, in one of three ways, chosen by the line just
before its fence:

- ``<!-- file: examples/app.py -->``: the block is that whole file, byte for byte;
- ``<!-- file: tests/test_x.py#name -->``: the block is the region ``name`` of that file, the
  lines between ``# region name`` and the next ``# endregion``, dedented (so a region can sit
  inside a test function);
- ``<!-- signature: aiodataloader.DataLoader -->``: the block is a call spelling out that
  callable's parameters (``*,`` included): names, order, kinds and defaults as ``inspect``
  sees them;
- no marker: the block runs as a script, in a fresh namespace, and must not raise.

A file named by a marker must be under ``examples/`` or ``tests/`` and be tested: a test module
itself, a typing module that mypy and pyright check, or a file that a test module names (by
module or by path). A signature block may leave out keyword-only parameters that have a
default (aliases, say); every parameter it spells must match.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
MARKER = re.compile(r"<!-- (file|signature): (\S+) -->\n")


@dataclass(frozen=True)
class Block:
    line: int
    code: str
    kind: str  # "file", "signature" or "run"
    target: str

    def __str__(self) -> str:
        return f"README.md:{self.line}"


def readme_blocks(text: str) -> list[Block]:
    blocks = []
    for fence in FENCE.finditer(text):
        before = text[: fence.start()]
        marker = MARKER.search(before, before.rfind("\n", 0, len(before) - 1) + 1)
        kind, target = marker.groups() if marker else ("run", "")
        line = before.count("\n") + 1
        blocks.append(Block(line, fence.group(1), kind, target))
    return blocks


def region(path: Path, name: str) -> str:
    lines = path.read_text().splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == f"# region {name}"]
    if len(starts) != 1:
        raise LookupError(f"{path} has {len(starts)} lines '# region {name}', expected 1")
    end = next(i for i in range(starts[0], len(lines)) if lines[i].strip() == "# endregion")
    # Trailing blank lines are the formatter's (two after a function), not the block's.
    return textwrap.dedent("".join(lines[starts[0] + 1 : end])).rstrip("\n") + "\n"


def is_tested(path: Path) -> bool:
    relative = path.relative_to(ROOT)
    if relative.parts[0] == "tests" and path.name.startswith(("test_", "typing_")):
        return True
    parts = relative.with_suffix("").parts
    names = [
        ".".join(parts),
        relative.as_posix(),
        f"from {'.'.join(parts[:-1])} import {parts[-1]}",
    ]
    tests = [test.read_text() for test in (ROOT / "tests").glob("test_*.py")]
    return any(name in test for name in names for test in tests)


def file_text(target: str) -> str:
    path_text, _, name = target.partition("#")
    path = (ROOT / path_text).resolve()
    assert path.relative_to(ROOT).parts[0] in {"examples", "tests"}, target
    assert path.is_file(), f"{target}: no such file"
    assert is_tested(path), f"{target}: no test module imports it"
    return region(path, name) if name else path.read_text()


def parameters_of_call(code: str) -> list[tuple[str, Any, Any]]:
    """(name, kind, default) of each parameter that a ``Name(a=1, *, b=2)`` block spells."""
    inner = code[code.index("(") + 1 : code.rindex(")")]
    function = ast.parse(f"def spelled({inner}\n): pass").body[0]
    assert isinstance(function, ast.FunctionDef)
    arguments = function.args
    positional: list[tuple[ast.arg, Any]] = [
        (a, inspect.Parameter.POSITIONAL_OR_KEYWORD) for a in arguments.args
    ]
    keyword = [(a, inspect.Parameter.KEYWORD_ONLY) for a in arguments.kwonlyargs]
    defaults = [*arguments.defaults, *arguments.kw_defaults]
    return [
        (argument.arg, kind, ast.literal_eval(default) if default else inspect.Parameter.empty)
        for (argument, kind), default in zip(
            positional + keyword,
            [None] * (len(positional) - len(arguments.defaults)) + defaults,
            strict=True,
        )
    ]


def real_parameters(dotted: str) -> list[tuple[str, Any, Any]]:
    module, _, name = dotted.rpartition(".")
    signature = inspect.signature(getattr(importlib.import_module(module), name))
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


BLOCKS = readme_blocks((ROOT / "README.md").read_text())


def test_the_readme_has_python_blocks() -> None:
    assert BLOCKS


@pytest.mark.parametrize("block", BLOCKS, ids=str)
def test_readme_block(block: Block) -> None:
    if block.kind == "file":
        assert block.code == file_text(block.target), f"{block} differs from {block.target}"
    elif block.kind == "signature":
        spelled = parameters_of_call(block.code)
        left_out = [p for p in real_parameters(block.target) if p not in spelled]
        assert [p for p in real_parameters(block.target) if p not in left_out] == spelled
        assert all(kind == inspect.Parameter.KEYWORD_ONLY for _, kind, _ in left_out), left_out
        assert inspect.Parameter.empty not in [default for _, _, default in left_out], left_out
    else:
        exec(compile(block.code, str(block), "exec"), {"__name__": "readme_block"})


def test_markers_are_found_and_checked(tmp_path: Path) -> None:
    text = (
        "intro\n<!-- file: examples/a.py -->\n```python\nx = 1\n```\n\n"
        "```python\ny = 2\n```\n<!-- signature: m.f -->\n```python\nf(a, *, b=None)\n```\n"
    )
    assert readme_blocks(text) == [
        Block(3, "x = 1\n", "file", "examples/a.py"),
        Block(7, "y = 2\n", "run", ""),
        Block(11, "f(a, *, b=None)\n", "signature", "m.f"),
    ]
    empty, keyword = inspect.Parameter.empty, inspect.Parameter.KEYWORD_ONLY
    assert parameters_of_call("f(\n    a,  # first\n    *,\n    b=None,\n)\n") == [
        ("a", inspect.Parameter.POSITIONAL_OR_KEYWORD, empty),
        ("b", keyword, None),
    ]
    source = tmp_path / "m.py"
    source.write_text("def f():\n    # region demo\n    x = 1\n    # endregion\n")
    assert region(source, "demo") == "x = 1\n"
    with pytest.raises(LookupError, match="has 0 lines '# region other'"):
        region(source, "other")
