"""A FastAPI blog on SQLAlchemy 2.0 async, with and without DataLoaders.

- ``models.py``: the ORM models (authors, posts, comments, tags).
- ``db.py``: the engine, the seed, the request's :class:`~examples.blog.db.SharedSession`
  (one ``AsyncSession`` per request, used by one task at a time) and the statement counter
  behind ``X-Query-Count``.
- ``queries.py``: the ``select(...)`` statements, written once as batched reads.
- ``loaders.py``: one DataLoader per batched read, their registry, and ``save()``, the rule
  for reading your own writes.
- ``rest.py``: ``GET /posts``, ``GET /authors/{id}`` and ``POST /posts/{id}/comments``.
- ``naive.py``: the same endpoints with one query per related row: the N+1 anti-pattern.
- ``graphql_api.py``: a Strawberry schema at ``/graphql`` (loaders) and ``/naive/graphql``
  (one query per resolved field), with depth, alias, token and list-size limits.
- ``guards.py``: bad input gets a clear 4xx, never a 500.
- ``shared_cache.py``: the loaders' value caches, shared by every worker on Redis.
- ``app.py``: ``create_app()``; the lifespan opens, seeds and disposes of the database.

Run it with ``python -m examples.blog`` (API docs at /docs, GraphiQL at /graphql; SQLite by
default, ``--database-url postgresql+asyncpg://...`` for PostgreSQL; ``--redis-url
redis://...`` to share the loaders' values between workers). ``python -m demo`` prints the
naive-against-loaders report.
"""
