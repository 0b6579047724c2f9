"""Runnable examples for aiodataloader; each one has a test in tests/test_examples_*.py."""
