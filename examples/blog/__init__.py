"""A FastAPI blog over a real SQLite database, with and without DataLoaders.

- ``db.py``: the schema, a deterministic seed, and the connections (one for reads, one for
  write transactions) behind a thin wrapper that counts each request's queries.
- ``queries.py``: the SQL, written once as batched reads (``... WHERE id IN (...)``).
- ``loaders.py``: one DataLoader per batched read, and the registry of their factories.
- ``rest.py``: ``GET /posts`` and ``GET /authors/{id}`` through loaders, and
  ``POST /posts/{id}/comments`` in a transaction.
- ``naive.py``: the same endpoints with one query per related row: the N+1 anti-pattern.
- ``graphql_api.py``: a Strawberry schema served at ``/graphql`` (loaders) and
  ``/naive/graphql`` (one query per resolved field).
- ``app.py``: ``create_app()``, the lifespan that opens, seeds and closes the database.
- ``demo.py``: runs the app on uvicorn, sends a scripted set of requests, prints the report.
- ``server.py``: starts the app on uvicorn in a child process (for the demo and benchmark).

Run it with ``python -m examples.blog`` (a server: API docs at /docs, GraphiQL at /graphql),
``python -m examples.blog.demo`` (the report) or ``bash scripts/demo.sh`` (a fresh machine).
"""
