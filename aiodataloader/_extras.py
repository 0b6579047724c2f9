"""The error for a module whose optional dependencies (an extra) are not installed."""

from __future__ import annotations


def missing_extra(module: str, needs: str, extra: str, error: ImportError) -> ImportError:
    """``raise missing_extra(...) from error`` where ``module``'s imports of ``needs`` failed."""
    return ImportError(
        f"{module} needs {needs} ({error}): install the `{extra}` extra, e.g. "
        f"pip install 'aiodataloader[{extra}]' (or '.[{extra}]' from a clone)"
    )
