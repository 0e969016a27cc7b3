"""The live status of every export slot, held in Redis.

One hash per slot (``KEY_TEMPLATE``) mirrors the slot's current export: what the status
endpoint serves without touching the database. Every change goes through one Lua script,
``TRANSITION``, that checks the slot still holds the expected export, run and status before
writing, so a pause racing a worker's acknowledgement, or two starts racing each other, can
never both win. ``ReportExport`` rows are the durable copy the hash is rebuilt from.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from typing import Any, TypedDict, cast

import orjson
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from django_report_export.conf import export_settings
from django_report_export.connection import get_redis
from django_report_export.exceptions import StatusUnavailable
from django_report_export.models import ReportExport, Status

KEY_TEMPLATE = "report_export:slot:{slot}"
#: The channel of a slot's status changes is its hash's key with this after it.
CHANGES_SUFFIX = ":changes"
LOCK_TEMPLATE = "report_export:lock:{slot}"
ANY = "*"
MISSING = "missing"

# KEYS[1] slot hash. ARGV: expected id, expected run, allowed statuses (comma separated,
# "*" for any, "missing" for an absent hash), then field/value pairs to write.
# Returns {written (1/0), status, id, run, request} as they are after the call.
TRANSITION = """
local current = redis.call('HMGET', KEYS[1], 'status', 'id', 'run', 'request')
local status = current[1] or 'missing'
local id = current[2] or ''
local run = current[3] or ''
local function allowed(list, value)
  if list == '*' then return true end
  for item in string.gmatch(list, '[^,]+') do
    if item == value then return true end
  end
  return false
end
if (ARGV[1] == '*' or ARGV[1] == id) and (ARGV[2] == '*' or ARGV[2] == run)
    and allowed(ARGV[3], status) then
  if #ARGV > 3 then
    redis.call('HSET', KEYS[1], unpack(ARGV, 4))
  end
  current = redis.call('HMGET', KEYS[1], 'status', 'id', 'run', 'request')
  return {1, current[1] or 'missing', current[2] or '', current[3] or '', current[4] or ''}
end
return {0, status, id, run, current[4] or ''}
"""


class Request(StrEnum):
    """What an operation asks of the slot's running export (the hash's ``request`` field)."""

    NONE = ""
    PAUSE = "pause"
    CANCEL = "cancel"

    @classmethod
    def of(cls, value: str | None) -> Request:
        """The request a hash's ``request`` field holds; anything else is none."""
        try:
            return cls(value or "")
        except ValueError:
            return cls.NONE


class SlotStatus(TypedDict, total=False):
    """A slot's hash as ``decode`` reads it: the fields ``snapshot`` and the runs write."""

    id: str | None
    service: str | None
    status: int
    format: str | None
    compression: str | None
    fields: list[str] | None
    filters: dict[str, Any] | None
    options: dict[str, Any] | None
    window: dict[str, Any] | None
    processed: int | None
    total: int | None
    started_at: str | None
    finished_at: str | None
    updated_at: str | None
    file_size: int | None
    sha256: str | None
    error: str | None
    run: str | None
    request: str | None
    rate: float | None
    heartbeat: float | None


JSON_FIELDS = ("fields", "filters", "options", "window")
INT_FIELDS = ("status", "processed", "total", "file_size")
FLOAT_FIELDS = ("rate", "heartbeat")

#: A number orjson may not read exactly: integers of 19 digits and more (beyond 64 bits).
_LONG_NUMBER = re.compile(rb"\d{19}")


def _json(raw: bytes) -> Any:
    if _LONG_NUMBER.search(raw) is None:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # what json wrote and orjson refuses: NaN, an escaped lone surrogate
    return json.loads(raw)


#: How ``decode`` reads each typed field from its bytes; the others become text.
_CONVERTERS: dict[str, Any] = {
    **dict.fromkeys(JSON_FIELDS, _json),
    **dict.fromkeys(INT_FIELDS, int),
    **dict.fromkeys(FLOAT_FIELDS, float),
}


@dataclass(frozen=True)
class TransitionResult:
    written: bool
    status: str
    id: str | None
    run: str
    request: str

    @property
    def missing(self) -> bool:
        return self.status == MISSING


def slot_key(slot: str) -> str:
    return KEY_TEMPLATE.format(slot=slot)


def encode(values: Mapping[str, Any]) -> dict[str, str]:
    """Redis hash values for ``values``: JSON for lists/dicts, ISO 8601 for datetimes."""
    encoded = {}
    for name, value in values.items():
        if value is None:
            encoded[name] = ""
        elif name in JSON_FIELDS:
            encoded[name] = json.dumps(value, separators=(",", ":"))
        elif isinstance(value, datetime):
            encoded[name] = value.isoformat()
        elif isinstance(value, bool):
            encoded[name] = "1" if value else "0"
        else:
            encoded[name] = str(value)
    return encoded


def decode(raw: Mapping[bytes, bytes]) -> SlotStatus:
    """The status ``encode`` wrote: typed fields typed (``None`` when absent), "" as ``None``."""
    # One pass: the status endpoint decodes a hash on every request.
    values: dict[str, Any] = dict.fromkeys(_CONVERTERS)
    for key, raw_value in raw.items():
        name = key.decode()
        if not raw_value:
            values[name] = None
            continue
        convert = _CONVERTERS.get(name)
        value = convert(raw_value) if convert is not None else raw_value.decode()
        values[name] = None if value == "" else value
    values["status"] = values["status"] or Status.READY
    return cast(SlotStatus, values)


def snapshot(export: ReportExport) -> dict[str, Any]:
    """The hash fields describing ``export`` as the database has it."""
    return {
        "id": export.pk,
        "service": export.service,
        "status": export.status,
        "format": export.format,
        "compression": export.compression,
        "fields": export.fields,
        "filters": export.filters,
        "options": {k: v for k, v in export.options.items() if k != "labels"},  # labels: row only
        "window": export.window(),
        "processed": export.processed,
        "total": export.total,
        "started_at": export.started_at,
        "finished_at": export.finished_at,
        "updated_at": export.updated_at,
        "file_size": export.file_size,
        "sha256": export.sha256,
        "error": export.error,
        "run": export.run_token,
        "request": "",
        "rate": "",
        "heartbeat": "",
    }


class StatusStore:
    """Reads and atomic writes of the per-slot status hashes."""

    def __init__(self, connection: Redis) -> None:
        self.redis = connection

    @cached_property
    def _transition(self) -> Any:
        # Registered on first write only: a store is made per call, and reads are the most.
        return self.redis.register_script(TRANSITION)

    def read(self, slot: str, early: EarlyRead | None = None) -> SlotStatus | None:
        """The slot's status; ``early``, if it was sent for this slot, gives the hash."""
        raw = early.receive() if early is not None and early.slot == slot else None
        if raw is None:
            try:
                raw = cast(Mapping[bytes, bytes], self.redis.hgetall(slot_key(slot)))
            except RedisError as exc:
                raise unreadable(exc) from exc
        return decode(raw) if raw else None

    def read_early(self, slot: str) -> EarlyRead | None:
        """``slot``'s read sent now (``EarlyRead``); ``None`` on a client-side-caching pool,
        whose reads are answered from its cache anyway."""
        if getattr(self.redis.connection_pool, "cache", None) is not None:
            return None
        return EarlyRead(self.redis, slot)

    def transition(
        self,
        slot: str,
        values: Mapping[str, Any],
        *,
        expect_id: Any = ANY,
        expect_run: str = ANY,
        allowed: Iterable[int | str] | str = ANY,
    ) -> TransitionResult:
        """Write ``values`` only if the slot holds ``expect_id``/``expect_run`` in ``allowed``."""
        allowed_arg = allowed if isinstance(allowed, str) else ",".join(str(s) for s in allowed)
        args: list[str] = [str(expect_id), expect_run, allowed_arg]
        for name, value in encode(values).items():
            args += [name, value]
        try:
            written, status, export_id, run, request = self._transition(
                keys=[slot_key(slot)], args=args
            )
        except RedisError as exc:
            raise StatusUnavailable(f"The status could not be updated in Redis: {exc}") from exc
        if written and "status" in values:
            self.announce(slot, _text(status))
        return TransitionResult(
            written=bool(written),
            status=_text(status),
            id=_text(export_id),
            run=_text(run),
            request=_text(request),
        )

    def restore(self, slot: str, values: Mapping[str, Any]) -> TransitionResult:
        """Write a whole status into a slot whose hash is gone (after a Redis flush)."""
        return self.transition(slot, values, allowed=MISSING)

    def slots(self) -> list[str]:
        """Every slot that has a status hash."""
        prefix = KEY_TEMPLATE.format(slot="")
        try:
            keys = self.redis.scan_iter(match=f"{prefix}*", count=500)
            return sorted(_text(key)[len(prefix) :] for key in keys)
        except RedisError as exc:
            raise StatusUnavailable(f"Redis cannot be reached: {exc}") from exc

    def lock(self, slot: str, timeout: float, wait: float) -> Any:
        return self.redis.lock(
            LOCK_TEMPLATE.format(slot=slot), timeout=timeout, blocking_timeout=wait
        )

    def announce(self, slot: str, status: str) -> None:
        """Publish a status written to ``slot`` for those waiting on it (``changes``); outside
        the transition's script, so that a Redis user without the channel's permission (ACL)
        still writes statuses, and its waits read them at their interval."""
        with contextlib.suppress(RedisError):
            self.redis.publish(slot_key(slot) + CHANGES_SUFFIX, status)

    @contextlib.contextmanager
    def changes(self, slot: str) -> Iterator[Callable[[float], None]]:
        """A wait of up to a given number of seconds that ends early when the slot's status
        changes (a transition that writes it publishes it). Without Redis, a plain sleep:
        the status read after it reports what is wrong."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(slot_key(slot) + CHANGES_SUFFIX)
        except RedisError:
            pubsub.close()
            yield time.sleep
            return

        def wait(seconds: float) -> None:
            try:
                pubsub.get_message(timeout=seconds)
            except RedisError:
                time.sleep(seconds)

        try:
            yield wait
        finally:
            with contextlib.suppress(RedisError):
                pubsub.close()

    def ping(self) -> None:
        try:
            self.redis.ping()
        except RedisError as exc:
            raise StatusUnavailable(f"Redis cannot be reached: {exc}") from exc


def get_store() -> StatusStore:
    return StatusStore(get_redis())


def export_id(status: SlotStatus) -> str:
    """The id of the slot's export ("" in a slot that never held one)."""
    return status.get("id") or ""


def is_stale(status: SlotStatus) -> bool:
    """Whether the slot's running export has not shown a heartbeat for ``STALE_AFTER``."""
    if status["status"] != Status.RUNNING:
        return False
    heartbeat = status.get("heartbeat") or 0.0
    return now_ts() - heartbeat > export_settings.STALE_AFTER


@contextlib.contextmanager
def slot_lock(store: StatusStore, slot: str) -> Iterator[None]:
    """Hold the slot's lock: operations on one slot, from any process, run one at a time."""
    timeout = export_settings.CANCEL_TIMEOUT
    try:
        lock = store.lock(slot, timeout=timeout * 2 + 30, wait=timeout + 5)
        acquired = lock.acquire()
    except RedisError as exc:
        raise StatusUnavailable(f"Redis cannot be reached: {exc}") from exc
    if not acquired:
        raise StatusUnavailable("Another operation on this export did not finish in time.")
    try:
        yield
    finally:
        with contextlib.suppress(RedisError):
            lock.release()


class EarlyRead:
    """A slot's ``HGETALL`` sent now and received later, so that its round trip overlaps
    other waiting (docs/performance.md, *The status endpoint*). ``receive()`` gives the raw
    hash, or ``None`` to read as usual; ``close()`` gives back an unreceived connection.
    """

    #: How long ``close()`` waits for an unreceived reply before dropping the connection.
    DRAIN_WAIT = 0.05

    def __init__(self, redis: Redis, slot: str) -> None:
        self.redis = redis
        self.slot = slot
        self._pool = redis.connection_pool
        self._conn: Any = None
        self._timed_out: RedisTimeoutError | None = None
        try:
            self._conn = self._pool.get_connection()
            self._conn.send_command("HGETALL", slot_key(slot))
        except RedisTimeoutError as exc:
            self._timed_out = exc
            self._give_back(disconnect=True)
        except Exception:
            # Anything else is left to the usual read, which reports it as it always has.
            self._give_back(disconnect=True)

    def receive(self) -> Mapping[bytes, bytes] | None:
        if self._timed_out is not None:
            raise unreadable(self._timed_out)
        if self._conn is None:
            return None
        try:
            raw = self.redis.parse_response(self._conn, "HGETALL")
        except RedisConnectionError:
            self._give_back(disconnect=True)
            return None
        except RedisError as exc:
            # A timeout leaves the connection out of step; an error reply does not.
            self._give_back(disconnect=isinstance(exc, RedisTimeoutError))
            raise unreadable(exc) from exc
        except BaseException:
            self._give_back(disconnect=True)
            raise
        self._give_back()
        return cast(Mapping[bytes, bytes], raw)

    def close(self) -> None:
        if self._conn is None:
            return
        try:
            drained = bool(self._conn.can_read(timeout=self.DRAIN_WAIT))
            if drained:
                self._conn.read_response()
        except Exception:
            drained = False
        self._give_back(disconnect=not drained)

    def _give_back(self, disconnect: bool = False) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if disconnect:
            conn.disconnect()
        self._pool.release(conn)


def unreadable(exc: RedisError) -> StatusUnavailable:
    return StatusUnavailable(f"Redis did not return a status: {exc}")


def now_ts() -> float:
    return time.time()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
