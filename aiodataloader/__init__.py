"""Batching and caching DataLoader for asyncio."""

__version__ = "0.5.0"
