"""Serve the blog example: ``python -m examples.blog [--port 8000] [--database-url URL]``."""

from __future__ import annotations

import argparse

import uvicorn

from examples.blog.app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.blog", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--database-url",
        default=None,
        help="a SQLAlchemy async URL, e.g. postgresql+asyncpg://user@127.0.0.1/blog "
        "(default: a new SQLite file in a temporary folder); its tables are created, and "
        "seeded when empty",
    )
    parser.add_argument(
        "--batch-window-ms",
        type=float,
        default=None,
        help="give every loader a batch_schedule_fn that waits this long before dispatching",
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        help="share a value cache between workers on this Redis, e.g. redis://127.0.0.1:6379/0",
    )
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    window = None if args.batch_window_ms is None else args.batch_window_ms / 1000
    shared_cache = None
    if args.redis_url is not None:
        from aiodataloader.redis import RedisCache  # needs redis-py only with --redis-url

        shared_cache = RedisCache.from_url(args.redis_url, key_prefix="blog:")
    app = create_app(args.database_url, batch_window_seconds=window, shared_cache=shared_cache)
    base = f"http://{args.host}:{args.port}"
    print(f"blog example on {base}: API docs {base}/docs, GraphiQL {base}/graphql", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
