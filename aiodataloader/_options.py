"""Loader options that 0.4.3 exposed as plain attributes (``batch``, ``cache``,
``max_batch_size``, ``name``): class-level defaults for subclasses, validated instance
values, and a hook so the loader can recompute its fast paths when one changes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Option(Generic[T]):
    """A validated attribute whose class-level value is the default for instances."""

    def __init__(self, default: T, check: Callable[[str, object], T]) -> None:
        self.default = default
        self.check = check
        self.attribute = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attribute = "_option_" + name

    def with_default(self, owner: type, default: object) -> Option[T]:
        option = Option(self.check(owner.__name__, default), self.check)
        option.attribute = self.attribute
        return option

    def __get__(self, instance: object, owner: type) -> T:
        if instance is None:
            return self.default
        # getattr/setattr, not __dict__: touching __dict__ slows every attribute read of the
        # instance on CPython 3.11+ (its inline attribute values are materialized).
        value: T = getattr(instance, self.attribute, self.default)
        return value

    def __set__(self, instance: Any, value: object) -> None:
        setattr(instance, self.attribute, self.check(instance._label(), value))
        instance._options_changed()


def adopt_class_defaults(cls: type, options: dict[str, Option[Any]]) -> None:
    """Turn a subclass's plain ``cache = False`` style attributes into validated defaults."""
    for name, option in options.items():
        value = cls.__dict__.get(name, option)
        # A method or property of the subclass's own (0.4.3 had no ``name``) is left alone.
        if not isinstance(value, Option) and not hasattr(value, "__get__"):
            setattr(cls, name, option.with_default(cls, value))
