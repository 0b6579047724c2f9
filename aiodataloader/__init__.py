"""Batching and caching DataLoader for asyncio: a drop-in superset of aiodataloader 0.4.3."""

from .loader import BatchLoadFn, BatchScheduleFn, DataLoader

__all__ = ["BatchLoadFn", "BatchScheduleFn", "DataLoader", "__version__"]
__version__ = "0.6.0"
