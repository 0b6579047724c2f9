from collections.abc import AsyncIterator

import pytest

from .examples_support import postgres_database


@pytest.fixture
def anyio_backend() -> str:
    # DataLoader is built on asyncio futures, so asyncio is the only backend.
    return "asyncio"


@pytest.fixture(params=["sqlite", "postgresql"])
async def blog_database_url(request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    """The blog example's database: None, its default (a new SQLite file); else a new
    PostgreSQL database (skipped where no server answers, a failure in CI)."""
    if request.param == "sqlite":
        yield None
    else:
        async with postgres_database() as url:
            yield url
