import pytest


@pytest.fixture
def anyio_backend() -> str:
    # DataLoader is built on asyncio futures, so asyncio is the only backend.
    return "asyncio"
