"""A shared value cache on Redis (or Valkey), through redis-py's asyncio client.

One :class:`RedisCache` per process holds the client, the circuit breaker and the
subscription to the invalidation channel; :meth:`RedisCache.for_loader` gives each loader its
:class:`RedisValueCache`, a namespace with its own TTL and serializer::

    shared = RedisCache.from_url("redis://127.0.0.1:6379/0")
    users = UserLoader(value_cache=shared.for_loader("users", ttl=60, serializer=...))

Per batch: one script call looks up every key and takes a short lease on each miss; one
script call writes the batch function's values back, each only while its lease holds, so a
value read before an invalidation is never written after it. ``loader.invalidate(key)``
deletes the entries and publishes their keys; every process drops them from its live loaders.

Redis is an optimisation, never a dependency: every call is bounded by ``timeout`` (5 ms by
default); a failure counts towards a circuit breaker that stops asking for ``reset_timeout``
seconds and then lets one call probe; the loads go to the batch function meanwhile. One log
line when the breaker opens, one when Redis answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, Literal, TypeVar, overload

try:
    import redis.asyncio as redis_asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
except ImportError as error:  # pragma: no cover - the test environment has redis
    from aiodataloader._extras import missing_extra

    raise missing_extra("aiodataloader.redis", "redis-py", "redis", error) from error

from .serialization import JsonSerializer, Serializer
from .value_cache import InvalidationListener, Listeners

__all__ = ["CacheStats", "RedisCache", "RedisValueCache"]

V = TypeVar("V")
T = TypeVar("T")

logger = logging.getLogger("aiodataloader")

#: Values of a batch that went to the batch function, and whether this process may write
#: them back: 1 = we hold the lease, 0 = another caller does, else the stored bytes.
_LOOKUP = """
local out = {}
for i = 1, #KEYS, 2 do
  local value = redis.call('GET', KEYS[i])
  if value then
    out[#out + 1] = value
  elseif redis.call('SET', KEYS[i + 1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""

#: Write each value only while its lease is still ours: an invalidation deletes the lease,
#: so a value read from the database before it can never be written after it. Then release
#: the batch's other leases (keys whose values were errors or could not be serialized).
#: KEYS: (data, lease) per value, then leases to release. ARGV: ttl in ms, the number of
#: values, (token, value) per value, then one token per lease to release.
_WRITE = """
local count = tonumber(ARGV[2])
local written = 0
for n = 1, count do
  if redis.call('GET', KEYS[2 * n]) == ARGV[1 + 2 * n] then
    redis.call('SET', KEYS[2 * n - 1], ARGV[2 + 2 * n], 'PX', ARGV[1])
    redis.call('DEL', KEYS[2 * n])
    written = written + 1
  end
end
for m = 2 * count + 1, #KEYS do
  if redis.call('GET', KEYS[m]) == ARGV[m + 2] then
    redis.call('DEL', KEYS[m])
  end
end
return written
"""

_LEASE_SUFFIX = "|lease"

# No CLIENT SETINFO after connecting: two round trips less per new connection (about 1 ms
# instead of 3 on a local server), which counts within a timeout of a few ms.
try:
    from redis.driver_info import DriverInfo

    _NO_CLIENT_SETINFO: dict[str, Any] = {"driver_info": DriverInfo(name=None, lib_version=None)}
except ImportError:  # pragma: no cover - redis-py before 7.1
    _NO_CLIENT_SETINFO = {"lib_name": None, "lib_version": None}
_SEGMENT = re.compile(r"[%:]")

if sys.version_info >= (3, 11):

    async def _bounded(awaitable: Awaitable[T], seconds: float) -> T:
        async with asyncio.timeout(seconds):
            return await awaitable

else:  # pragma: no cover - exercised by the 3.10 CI job

    async def _bounded(awaitable: Awaitable[T], seconds: float) -> T:
        return await asyncio.wait_for(awaitable, seconds)


class _Unavailable(Exception):
    """Redis was not asked (circuit open) or did not answer in time."""


@dataclass
class CacheStats:
    """Counts since the :class:`RedisCache` was created (plain integers, this process)."""

    hits: int = 0
    misses: int = 0
    writes: int = 0
    #: values not written: the lease was lost (an invalidation, or another writer)
    writes_skipped: int = 0
    #: values refused by the serializer, or stored bytes it could not read
    serialization_errors: int = 0
    #: calls that failed or timed out
    errors: int = 0
    #: of those, timeouts that fired a whole timeout late (a busy event loop, not a slow
    #: Redis): they do not count towards opening the circuit
    timeouts_while_busy: int = 0
    #: calls not made because the circuit was open
    short_circuited: int = 0
    invalidations: int = 0
    #: invalidation messages received (from any process, this one included)
    invalidations_received: int = 0
    lookup_round_trips: int = 0
    write_round_trips: int = 0

    @property
    def hit_rate(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


class _CircuitBreaker:
    """Closed: every call goes. ``failure_threshold`` failures in a row open it: no call for
    ``reset_timeout`` seconds, then one probe; its success closes it, its failure reopens."""

    __slots__ = ("failure_threshold", "failures", "opened_at", "probing", "reset_timeout", "what")

    def __init__(self, what: str, failure_threshold: int, reset_timeout: float) -> None:
        self.what = what
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        if self.probing or time.monotonic() - self.opened_at < self.reset_timeout:
            return False
        self.probing = True
        return True

    def succeeded(self) -> None:
        if self.opened_at is not None:
            logger.warning("%s answers again: shared cache back in use", self.what)
        self.failures = 0
        self.opened_at = None
        self.probing = False

    def inconclusive(self) -> None:
        """A call that says nothing about Redis: a probe may go again."""
        self.probing = False

    def failed(self, error: BaseException) -> None:
        self.failures += 1
        if self.opened_at is not None:
            # A failed probe: stay open, quietly (the opening was logged).
            self.opened_at = time.monotonic()
            self.probing = False
        elif self.failures >= self.failure_threshold:
            self.opened_at = time.monotonic()
            logger.warning(
                "%s failed %d times in a row (last: %s); loads go to their batch functions, "
                "Redis is asked again in %.1f s (logged once until it answers)",
                self.what,
                self.failures,
                _describe_error(error),
                self.reset_timeout,
            )


class RedisCache:
    """The Redis side of shared value caches, for one process (one per app).

    ``timeout`` bounds every Redis call of a load (seconds; 5 ms by default): past it the
    loads go to the batch function. ``failure_threshold`` failures in a row open the
    circuit for ``reset_timeout`` seconds. A timeout that fires a whole timeout late says
    the event loop was busy, not Redis, and does not count; on a host whose loops lag
    (CPU-starved), raise ``timeout`` rather than lose most lookups to it.

    Stampedes: within a process, a key that one request is looking up or fetching is never
    looked up or fetched again by another: they wait for its value (up to
    ``stampede_wait`` seconds). Across processes, the first to miss a key takes its lease;
    ``stampede`` says what the others do: ``"wait"`` (the default) polls Redis for that
    value for up to ``stampede_wait`` seconds, then fetches; ``"fetch"`` fetches at once
    (one duplicate query per process, no wait). Leases last ``lease_timeout`` seconds (keep
    it above your slowest batch function). Keys start with ``key_prefix``; invalidations
    are published on ``channel``.

    Use ``async with`` (or :meth:`aclose`) in the app's lifespan to close the client and
    the subscription.
    """

    def __init__(
        self,
        client: redis_asyncio.Redis,
        *,
        timeout: float = 0.005,
        failure_threshold: int = 3,
        reset_timeout: float = 1.0,
        stampede: Literal["fetch", "wait"] = "wait",
        stampede_wait: float = 0.05,
        lease_timeout: float = 5.0,
        key_prefix: str = "aiodataloader:",
        channel: str = "aiodataloader:invalidate",
    ) -> None:
        label = type(self).__name__
        if not isinstance(client, redis_asyncio.Redis):
            raise TypeError(
                f"{label}: client must be a redis.asyncio.Redis; got {client!r} "
                f"(type {type(client).__name__})"
            )
        connection: dict[str, Any] = client.get_connection_kwargs()  # type: ignore[no-untyped-call]
        if connection.get("decode_responses"):
            raise ValueError(
                f"{label}: the client must return bytes (decode_responses=False): values "
                "are bytes of the serializer"
            )
        for option, value in (
            ("timeout", timeout),
            ("reset_timeout", reset_timeout),
            ("stampede_wait", stampede_wait),
            ("lease_timeout", lease_timeout),
        ):
            _check_positive(label, option, value)
        if type(failure_threshold) is not int or failure_threshold < 1:
            raise ValueError(
                f"{label}: failure_threshold must be an int >= 1; got {failure_threshold!r}"
            )
        if stampede not in ("fetch", "wait"):
            raise ValueError(f"{label}: stampede must be 'fetch' or 'wait'; got {stampede!r}")
        for option, text in (("key_prefix", key_prefix), ("channel", channel)):
            if not isinstance(text, str) or not text:
                raise ValueError(f"{label}: {option} must be a non-empty str; got {text!r}")
        self.client = client
        self.timeout = timeout
        self.stampede = stampede
        self.stampede_wait = stampede_wait
        self.lease_ms = max(1, round(lease_timeout * 1000))
        self.key_prefix = key_prefix
        self.channel = channel
        self.stats = CacheStats()
        address = _address(client)
        self._breaker = _CircuitBreaker(f"Redis at {address}", failure_threshold, reset_timeout)
        self._lookup = client.register_script(_LOOKUP)
        self._write = client.register_script(_WRITE)
        self._listeners: dict[str, Listeners] = {}
        self._subscriber: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        # Per process, shared by every loader's value cache (keys are namespaced):
        # leases taken and not used yet: redis key -> (token, deadline);
        self.leases: dict[str, tuple[str, float]] = {}
        # the leases each lookup took (token -> redis keys), to release those not written;
        self.lease_batches: dict[str, list[str]] = {}
        # keys a request of this process is looking up or fetching: (value, started at).
        self.inflight: dict[str, tuple[asyncio.Future[bytes | None], float]] = {}
        self._token_prefix = uuid.uuid4().hex[:16]
        self._tokens = itertools.count()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout: float = 0.005,
        max_connections: int | None = None,
        failure_threshold: int = 3,
        reset_timeout: float = 1.0,
        stampede: Literal["fetch", "wait"] = "wait",
        stampede_wait: float = 0.05,
        lease_timeout: float = 5.0,
        key_prefix: str = "aiodataloader:",
        channel: str = "aiodataloader:invalidate",
    ) -> RedisCache:
        """A cache on a new client for ``url`` (``redis://``, ``rediss://``, ``unix://``).

        The client never retries (the loader has a better fallback: the batch function) and
        its socket timeouts are a backstop behind ``timeout``; ``max_connections`` bounds its
        pool (redis-py's default otherwise). The other options are :class:`RedisCache`'s."""
        _check_positive(cls.__name__, "timeout", timeout)
        client = redis_asyncio.Redis.from_url(
            url,
            retry=Retry(NoBackoff(), 0),
            socket_timeout=max(1.0, timeout),
            socket_connect_timeout=max(1.0, timeout),
            max_connections=max_connections,
            **_NO_CLIENT_SETINFO,
        )
        return cls(
            client,
            timeout=timeout,
            failure_threshold=failure_threshold,
            reset_timeout=reset_timeout,
            stampede=stampede,
            stampede_wait=stampede_wait,
            lease_timeout=lease_timeout,
            key_prefix=key_prefix,
            channel=channel,
        )

    @overload
    def for_loader(
        self,
        name: str,
        *,
        ttl: float,
        version: int = 1,
        serializer: None = None,
        prefix: str = "",
    ) -> RedisValueCache[Any]: ...
    @overload
    def for_loader(
        self,
        name: str,
        *,
        ttl: float,
        version: int = 1,
        serializer: Serializer[V],
        prefix: str = "",
    ) -> RedisValueCache[V]: ...

    def for_loader(
        self,
        name: str,
        *,
        ttl: float,
        version: int = 1,
        serializer: Serializer[Any] | None = None,
        prefix: str = "",
    ) -> RedisValueCache[Any]:
        """The value cache of one loader: keys ``<key_prefix><name>:v<version>:<prefix>:<key>``
        where ``<key>`` is the JSON of the loader's cache key. Bump ``version`` when the
        shape of the values changes. ``prefix`` is for whatever else the values depend on
        (a tenant, a permission set): see :meth:`RedisValueCache.with_prefix`."""
        label = type(self).__name__
        if not isinstance(name, str) or not name:
            raise ValueError(f"{label}.for_loader: name must be a non-empty str; got {name!r}")
        if type(version) is not int or version < 0:
            raise ValueError(
                f"{label}.for_loader({name!r}): version must be an int >= 0; got {version!r}"
            )
        _check_positive(f"{label}.for_loader({name!r})", "ttl", ttl)
        if not isinstance(prefix, str):
            raise TypeError(f"{label}.for_loader({name!r}): prefix must be a str; got {prefix!r}")
        chosen: Serializer[Any] = JsonSerializer() if serializer is None else serializer
        for method in ("dumps", "loads"):
            if not callable(getattr(chosen, method, None)):
                raise TypeError(
                    f"{label}.for_loader({name!r}): serializer must have dumps(value) -> "
                    f"bytes and loads(bytes) -> value; got {chosen!r}"
                )
        return RedisValueCache(self, name, version, ttl, chosen, prefix)

    async def start(self) -> None:
        """Connect, load the scripts and subscribe to invalidations now (each bounded by one
        second), so the first requests do not pay for it within ``timeout``. Optional: the
        first lookup starts the subscription anyway. Never raises for an unreachable Redis."""
        self._ensure_subscriber()
        try:
            for script in (self._lookup, self._write):
                await asyncio.wait_for(self.client.script_load(script.script), 1.0)
        except (asyncio.TimeoutError, OSError, redis_asyncio.RedisError) as error:
            logger.warning(
                "Redis at %s: not ready at start (%s); loads go to their batch functions "
                "until it answers",
                _address(self.client),
                _describe_error(error),
            )
        # Redis down: the subscriber keeps trying in the background.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 1.0)

    async def aclose(self) -> None:
        """Stop the subscription and close the client's connections (bounded)."""
        task, self._subscriber = self._subscriber, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=1.0)
        with contextlib.suppress(asyncio.TimeoutError, OSError, redis_asyncio.RedisError):
            await asyncio.wait_for(self.client.aclose(), 1.0)

    async def __aenter__(self) -> RedisCache:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def available(self) -> bool:
        """False while the circuit breaker is open (Redis is not being asked)."""
        return not self._breaker.is_open

    @property
    def subscribed(self) -> bool:
        """True while this process receives invalidations."""
        return self._subscribed.is_set()

    def __repr__(self) -> str:
        state = "open" if self._breaker.is_open else "closed"
        return (
            f"<RedisCache {_address(self.client)} timeout={self.timeout}s circuit={state} "
            f"hit_rate={self.stats.hit_rate:.0%}>"
        )

    # -- called by RedisValueCache -----------------------------------------------------

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis call under the timeout and the breaker, or raise _Unavailable."""
        if not self._breaker.allow():
            self.stats.short_circuited += 1
            raise _Unavailable("the circuit is open")
        started = time.monotonic()
        try:
            result = await _bounded(operation(), self.timeout)
        except Exception as error:
            self.stats.errors += 1
            late = time.monotonic() - started - self.timeout
            if isinstance(error, asyncio.TimeoutError) and late > self.timeout:
                # The timeout fired a whole timeout late: this event loop was too busy to
                # run it (or to read the answer) in time, which says nothing about Redis.
                # Opening the circuit would only send more queries to the database.
                self.stats.timeouts_while_busy += 1
                self._breaker.inconclusive()
            else:
                self._breaker.failed(error)
            raise _Unavailable(_describe_error(error)) from error
        self._breaker.succeeded()
        return result

    def settle_inflight(self, redis_key: str, data: bytes | None) -> None:
        entry = self.inflight.pop(redis_key, None)
        if entry is not None and not entry[0].done():
            entry[0].set_result(data)

    def new_token(self) -> str:
        return f"{self._token_prefix}:{next(self._tokens)}"

    def add_listener(self, namespace: str, listener: InvalidationListener) -> None:
        # (A loader may be built outside the event loop: the first lookup subscribes then.)
        listeners = self._listeners.get(namespace)
        if listeners is None:
            listeners = self._listeners[namespace] = Listeners()
        listeners.add(listener)

    def _ensure_subscriber(self) -> None:
        task = self._subscriber
        if task is not None and not task.done():
            return
        loop = asyncio.get_running_loop()
        self._subscriber = loop.create_task(self._subscribe_forever())

    async def _subscribe_forever(self) -> None:
        delay = 0.05
        failing = False
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._subscribed.set()
                if failing:
                    failing = False
                    logger.warning("Redis invalidation channel %r: subscribed again", self.channel)
                delay = 0.05
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._received(message["data"])
            except Exception as error:
                self._subscribed.clear()
                # Missed messages matter little: Redis itself was updated by the publisher,
                # only live request caches here could have missed a drop.
                if not failing:
                    failing = True
                    logger.warning(
                        "Redis invalidation channel %r: %s; resubscribing in the background "
                        "(logged once until it works)",
                        self.channel,
                        _describe_error(error),
                    )
            finally:
                self._subscribed.clear()
                with contextlib.suppress(Exception):  # the connection is gone either way
                    await asyncio.wait_for(pubsub.aclose(), 1.0)  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _received(self, data: bytes) -> None:
        try:
            message = json.loads(data)
            namespace, keys = message["ns"], message["keys"]
        except (ValueError, KeyError, TypeError):
            logger.warning(
                "Redis invalidation channel %r: ignored a malformed message", self.channel
            )
            return
        self.stats.invalidations_received += 1
        for key in keys:
            # A fetch under way here started before the change: its waiters fetch anew.
            self.settle_inflight(f"{namespace}{key}", None)
        listeners = self._listeners.get(namespace)
        if listeners is None:
            return
        if not listeners:
            del self._listeners[namespace]
            return
        decoded: list[Hashable] = []
        for key in keys:
            try:
                decoded.append(_decode_key(json.loads(key)))
            except (ValueError, TypeError):
                continue
        listeners.drop(decoded)


class RedisValueCache(Generic[V]):
    """The shared value cache of one loader (a :class:`~aiodataloader.value_cache.ValueCache`).
    Built by :meth:`RedisCache.for_loader`."""

    def __init__(
        self,
        shared: RedisCache,
        name: str,
        version: int,
        ttl: float,
        serializer: Serializer[V],
        prefix: str,
    ) -> None:
        self.shared = shared
        self.name = name
        self.version = version
        self.ttl = ttl
        self.serializer = serializer
        self.prefix = prefix
        self.namespace = f"{shared.key_prefix}{_segment(name)}:v{version}:{_segment(prefix)}:"
        self._ttl_ms = max(1, round(ttl * 1000))
        self._warned: set[str] = set()

    def with_prefix(self, prefix: str) -> RedisValueCache[V]:
        """The same cache for values that also depend on ``prefix`` (a tenant id, a
        permission set): its keys never meet those of another prefix. Cheap: call it in a
        loader factory, per request."""
        if not isinstance(prefix, str):
            raise TypeError(f"{self._label()}.with_prefix: prefix must be a str; got {prefix!r}")
        return RedisValueCache(
            self.shared, self.name, self.version, self.ttl, self.serializer, prefix
        )

    def __repr__(self) -> str:
        return f"<RedisValueCache {self.namespace}* ttl={self.ttl}s {self.serializer!r}>"

    # -- the ValueCache protocol -------------------------------------------------------

    async def get_many(self, keys: Sequence[Hashable]) -> Mapping[Hashable, V]:
        shared = self.shared
        shared._ensure_subscriber()
        by_redis_key = self._redis_keys(keys)
        if not by_redis_key:
            return {}
        # Single flight in this process: a key another request of this process is looking
        # up or fetching already is not looked up again; this call waits for that value.
        now = time.monotonic()
        inflight = self.shared.inflight
        loop = asyncio.get_running_loop()
        mine: list[str] = []
        joined: list[tuple[str, asyncio.Future[bytes | None]]] = []
        for redis_key in by_redis_key:
            entry = inflight.get(redis_key)
            if entry is not None and not entry[0].done() and now - entry[1] < shared.stampede_wait:
                joined.append((redis_key, entry[0]))
            else:
                inflight[redis_key] = (loop.create_future(), now)
                mine.append(redis_key)
        found: dict[Hashable, V] = {}
        if mine:
            await self._look_up(mine, by_redis_key, found)
        if joined:
            await asyncio.wait([future for _, future in joined], timeout=shared.stampede_wait)
            for redis_key, future in joined:
                if future.done() and not future.cancelled():
                    data = future.result()
                    if data is not None:
                        self._decode_into(found, by_redis_key[redis_key], redis_key, data)
        shared.stats.hits += len(found)
        shared.stats.misses += len(by_redis_key) - len(found)
        return found

    async def _look_up(
        self, redis_keys: list[str], by_redis_key: dict[str, Hashable], found: dict[Hashable, V]
    ) -> None:
        """One script call: values, or a lease on each missing key (or who holds it)."""
        shared = self.shared
        token = shared.new_token()
        arguments: list[str] = []
        for redis_key in redis_keys:
            arguments += (redis_key, redis_key + _LEASE_SUFFIX)
        try:
            replies = await shared.call(
                lambda: shared._lookup(keys=arguments, args=[token, shared.lease_ms])
            )
        except _Unavailable:
            for redis_key in redis_keys:
                self.shared.settle_inflight(redis_key, None)
            return
        shared.stats.lookup_round_trips += 1
        waiting: list[str] = []
        taken: list[str] = []
        deadline = time.monotonic() + shared.lease_ms / 1000
        for redis_key, reply in zip(redis_keys, replies, strict=True):
            if isinstance(reply, bytes):
                self.shared.settle_inflight(redis_key, reply)
                self._decode_into(found, by_redis_key[redis_key], redis_key, reply)
            elif reply == 1:
                # Ours to fetch: its in-flight entry is settled by set_many.
                self.shared.leases[redis_key] = (token, deadline)
                taken.append(redis_key)
            else:
                waiting.append(redis_key)
        if taken:
            self.shared.lease_batches[token] = taken
        if waiting and shared.stampede == "wait":
            await self._wait_for_values(waiting, by_redis_key, found)
        # Still missing: another process holds the lease. This call fetches them (without
        # writing) and set_many hands the values to the callers of this process that wait.

    async def set_many(self, values: Mapping[Hashable, V]) -> None:
        shared = self.shared
        leases = self.shared.leases
        pairs: list[str] = []
        payload: list[str | bytes | int] = []
        batches: set[str] = set()
        for key, value in values.items():
            redis_key = self._redis_key(key)
            if redis_key is None:
                continue
            lease = leases.pop(redis_key, None)
            if lease is None and redis_key not in self.shared.inflight:
                shared.stats.writes_skipped += 1
                continue
            if lease is not None:
                batches.add(lease[0])
            try:
                data = self.serializer.dumps(value)
            except Exception as error:
                self._refuse(key, value, error)
                self.shared.settle_inflight(redis_key, None)
                if lease is not None:
                    leases[redis_key] = lease  # released below with the batch's others
                continue
            self.shared.settle_inflight(redis_key, data)
            if lease is None:
                shared.stats.writes_skipped += 1  # another process holds the lease
                continue
            pairs += (redis_key, redis_key + _LEASE_SUFFIX)
            payload += (lease[0], data)
        releases: list[str] = []
        tokens: list[str] = []
        for token in batches:
            for redis_key in self.shared.lease_batches.pop(token, ()):
                lease = leases.get(redis_key)
                if lease is not None and lease[0] == token:
                    del leases[redis_key]
                    self.shared.settle_inflight(redis_key, None)
                    releases.append(redis_key + _LEASE_SUFFIX)
                    tokens.append(token)
        self._forget_expired_leases()
        if not pairs and not releases:
            return
        arguments = [self._ttl_ms, len(pairs) // 2, *payload, *tokens]
        try:
            written = await shared.call(
                lambda: shared._write(keys=[*pairs, *releases], args=arguments)
            )
        except _Unavailable:
            return
        shared.stats.write_round_trips += 1
        shared.stats.writes += int(written)
        shared.stats.writes_skipped += len(pairs) // 2 - int(written)

    async def delete_many(self, keys: Sequence[Hashable]) -> None:
        """Delete the keys (and their leases) and publish them to every process, in one
        round trip. Raises ``ConnectionError`` where Redis could not be reached."""
        shared = self.shared
        by_redis_key = self._redis_keys(keys)
        if not by_redis_key:
            return
        doomed: list[str] = []
        for redis_key in by_redis_key:
            shared.leases.pop(redis_key, None)
            shared.settle_inflight(redis_key, None)
            doomed += (redis_key, redis_key + _LEASE_SUFFIX)
        message = json.dumps(
            {"ns": self.namespace, "keys": [k[len(self.namespace) :] for k in by_redis_key]}
        )

        async def delete_and_publish() -> list[Any]:
            async with shared.client.pipeline(transaction=False) as pipe:
                pipe.delete(*doomed)
                pipe.publish(shared.channel, message)
                result: list[Any] = await pipe.execute()
                return result

        try:
            await shared.call(delete_and_publish)
        except _Unavailable as error:
            raise ConnectionError(
                f"{self._label()}: Redis did not delete the keys: {error}"
            ) from error
        shared.stats.invalidations += len(by_redis_key)

    def add_listener(self, listener: InvalidationListener) -> None:
        self.shared.add_listener(self.namespace, listener)

    # -- helpers -----------------------------------------------------------------------

    def _label(self) -> str:
        return f"RedisValueCache({self.name!r}, version={self.version})"

    def _redis_key(self, key: Hashable) -> str | None:
        try:
            return self.namespace + _encode_key(key)
        except TypeError as error:
            self._warn_once(
                f"key:{type(key).__name__}",
                "%s: cache keys of type %s cannot be shared (%s); such loads go to the "
                "batch function",
                self._label(),
                type(key).__name__,
                error,
            )
            return None

    def _redis_keys(self, keys: Sequence[Hashable]) -> dict[str, Hashable]:
        by_redis_key: dict[str, Hashable] = {}
        for key in keys:
            redis_key = self._redis_key(key)
            if redis_key is not None:
                by_redis_key[redis_key] = key
        return by_redis_key

    def _decode_into(
        self, found: dict[Hashable, V], key: Hashable, redis_key: str, data: bytes
    ) -> None:
        try:
            found[key] = self.serializer.loads(data)
        except Exception as error:
            self.shared.stats.serialization_errors += 1
            self._warn_once(
                "loads",
                "%s: %r cannot read the stored value of %s (%s); treated as a miss. Bump "
                "the version when the shape of the values changes",
                self._label(),
                self.serializer,
                redis_key,
                _describe_error(error),
            )

    def _refuse(self, key: Hashable, value: object, error: Exception) -> None:
        self.shared.stats.serialization_errors += 1
        self._warn_once(
            f"dumps:{type(value).__name__}",
            "%s refused to store the value of key %r: %r cannot serialize a %s (%s). The load "
            "succeeded; values of this type are not shared. Pass a serializer for this "
            "value type (MsgspecSerializer or PydanticSerializer)",
            self._label(),
            key,
            self.serializer,
            type(value).__name__,
            _describe_error(error),
        )

    def _warn_once(self, topic: str, message: str, *args: object) -> None:
        if topic not in self._warned:
            self._warned.add(topic)
            logger.warning(message, *args)

    async def _wait_for_values(
        self, waiting: list[str], by_redis_key: dict[str, Hashable], found: dict[Hashable, V]
    ) -> None:
        shared = self.shared
        deadline = time.monotonic() + shared.stampede_wait
        pause = 0.002
        while waiting and time.monotonic() < deadline:
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.01)
            asked = list(waiting)
            try:
                replies = await shared.call(partial(shared.client.mget, asked))
            except _Unavailable:
                return
            shared.stats.lookup_round_trips += 1
            waiting = []
            for redis_key, reply in zip(asked, replies, strict=True):
                if isinstance(reply, bytes):
                    self.shared.settle_inflight(redis_key, reply)
                    self._decode_into(found, by_redis_key[redis_key], redis_key, reply)
                else:
                    waiting.append(redis_key)

    def _forget_expired_leases(self) -> None:
        """Drop leases Redis has expired already (batches whose values were all errors
        never reach set_many), so these dicts stay small."""
        if (
            len(self.shared.leases) > 1024
            or len(self.shared.lease_batches) > 1024
            or len(self.shared.inflight) > 1024
        ):
            now = time.monotonic()
            lease_seconds = self.shared.lease_ms / 1000
            for redis_key, (_, started) in list(self.shared.inflight.items()):
                if now - started > lease_seconds:
                    self.shared.settle_inflight(redis_key, None)
            for redis_key, (token, deadline) in list(self.shared.leases.items()):
                if deadline < now:
                    del self.shared.leases[redis_key]
                    self.shared.lease_batches.pop(token, None)
            for token in [t for t, keys in self.shared.lease_batches.items() if not keys]:
                del self.shared.lease_batches[token]


def _encode_key(key: Hashable) -> str:
    """The cache key as compact JSON: the same text in every process, and a complete JSON
    value, so one key never reads as another key plus a suffix."""
    _check_key(key)
    return json.dumps(key, separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def _check_key(key: object) -> None:
    if key is None or isinstance(key, (str, int, float)):
        return
    if isinstance(key, tuple):
        for part in key:
            _check_key(part)
        return
    raise TypeError(
        f"a shared cache key must be a str, int, float, bool, None or a tuple of these (the "
        f"loader's cache key function can map other keys to one); got {type(key).__name__}"
    )


def _decode_key(value: object) -> Hashable:
    if isinstance(value, list):
        return tuple(_decode_key(part) for part in value)
    if isinstance(value, (str, int, float)) or value is None:
        return value
    raise TypeError(f"not a shared cache key: {value!r}")


def _segment(text: str) -> str:
    """A key segment with no ':' of its own, so segments never run into each other."""
    return _SEGMENT.sub(lambda match: "%25" if match.group() == "%" else "%3A", text)


def _check_positive(label: str, option: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{label}: {option} must be a number of seconds > 0; got {value!r}")


def _address(client: redis_asyncio.Redis) -> str:
    kwargs = client.get_connection_kwargs()  # type: ignore[no-untyped-call]
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"


def _describe_error(error: BaseException) -> str:
    if isinstance(error, (asyncio.TimeoutError, TimeoutError)) and not str(error):
        return "TimeoutError: no answer in time"
    return f"{type(error).__name__}: {error}"
