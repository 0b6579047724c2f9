"""Checked by mypy --strict only: a factory that builds another type than its class.

Pyright solves the class's type variable to a union with the factory's type and accepts these,
so this module is not in pyright's list; tests/typing_scope.py holds what both reject.
"""

from __future__ import annotations

from aiodataloader.asgi import LoaderRegistry, Loaders


class Session:
    pass


class User:
    pass


def user(scope: Loaders) -> User:
    return User()


async def async_user() -> User:
    return User()


registry = LoaderRegistry()
registry.register(Session, user)  # type: ignore[arg-type]
registry.register(Session, async_user)  # type: ignore[arg-type]
registry.register(Session, lambda scope: User())  # type: ignore[arg-type, return-value]
