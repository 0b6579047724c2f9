"""How a shared value cache turns values into bytes and back.

JSON (the standard library) by default; msgspec or pydantic where the value type asks for
it (dataclasses, ``msgspec.Struct``, pydantic models). Never pickle: whoever can write to a
shared cache must not be able to run code in the processes that read it. A serializer that
decodes into a declared type also refuses bytes of another shape.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, overload

V = TypeVar("V")

if TYPE_CHECKING:
    import msgspec
    import pydantic


class Serializer(Protocol[V]):
    """Bytes for a value, and the value for those bytes. Both may raise on bad input."""

    def dumps(self, value: V) -> bytes: ...

    def loads(self, data: bytes) -> V: ...


class JsonSerializer(Generic[V]):
    """JSON through the standard library, for JSON-shaped values (dicts with string keys,
    lists, strings, numbers, booleans, None). Tuples come back as lists and integer dict
    keys as strings: for other shapes use :class:`MsgspecSerializer` or
    :class:`PydanticSerializer` with the value type."""

    def dumps(self, value: V) -> bytes:
        # allow_nan=False: NaN is not JSON, and other readers would refuse it.
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()

    def loads(self, data: bytes) -> V:
        value: V = json.loads(data)
        return value

    def __repr__(self) -> str:
        return "JsonSerializer()"


class MsgspecSerializer(Generic[V]):
    """msgspec JSON (or MessagePack) encoding, decoded into ``value_type``: dataclasses,
    ``msgspec.Struct``, ``TypedDict``, unions, containers of these. Needs ``msgspec``."""

    @overload
    def __init__(self, value_type: type[V], *, msgpack: bool = False) -> None: ...
    @overload
    def __init__(self, value_type: Any, *, msgpack: bool = False) -> None: ...

    def __init__(self, value_type: Any, *, msgpack: bool = False) -> None:
        try:
            import msgspec
        except ImportError as error:  # pragma: no cover - msgspec is installed for tests
            raise ImportError("MsgspecSerializer needs msgspec: pip install msgspec") from error
        self.value_type = value_type
        module = msgspec.msgpack if msgpack else msgspec.json
        self._encoder: msgspec.json.Encoder | msgspec.msgpack.Encoder = module.Encoder()
        self._decoder: msgspec.json.Decoder[V] | msgspec.msgpack.Decoder[V] = module.Decoder(
            value_type
        )

    def dumps(self, value: V) -> bytes:
        return self._encoder.encode(value)

    def loads(self, data: bytes) -> V:
        return self._decoder.decode(data)

    def __repr__(self) -> str:
        return f"MsgspecSerializer({self.value_type!r})"


class PydanticSerializer(Generic[V]):
    """pydantic JSON, validated into ``value_type`` (a model, or any type a
    ``pydantic.TypeAdapter`` accepts). Needs ``pydantic`` 2."""

    @overload
    def __init__(self, value_type: type[V]) -> None: ...
    @overload
    def __init__(self, value_type: Any) -> None: ...

    def __init__(self, value_type: Any) -> None:
        try:
            import pydantic
        except ImportError as error:  # pragma: no cover - pydantic is installed for tests
            raise ImportError(
                "PydanticSerializer needs pydantic 2: pip install pydantic"
            ) from error
        self.value_type = value_type
        self._adapter: pydantic.TypeAdapter[V] = pydantic.TypeAdapter(value_type)

    def dumps(self, value: V) -> bytes:
        # warnings="error": a value of another type is refused, not stored with a warning.
        return self._adapter.dump_json(value, warnings="error")

    def loads(self, data: bytes) -> V:
        return self._adapter.validate_json(data)

    def __repr__(self) -> str:
        return f"PydanticSerializer({self.value_type!r})"
