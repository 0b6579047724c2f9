"""The blog demo: runs ``examples/blog`` on a real uvicorn server and prints, per endpoint, the
SQL queries and the latency of the naive (N+1) version against the DataLoader version.

``python -m demo`` (``--quick``, ``--serve``, ``--database-url``); ``server.py`` starts the
app in a child process, for the demo and ``benchmarks/e2e_blog.py`` alike.
"""
