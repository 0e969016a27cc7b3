"""Sharded exports: splitting one export into key ranges, and the leases jobs hold on them.

An export of more rows than ``SHARD_ROWS`` (or whose service or start asks for shards) is
split, by the job that first runs it, into K contiguous primary-key ranges of about equal
size (``plan``). Every range is a ``ReportExportShard`` row, the durable record of its
checkpoint. Which job exports which range is decided in Redis: one hash per export holds each
shard's state (``pending``, ``run:<token>``, ``done`` or ``failed``), heartbeat and live row
count, and Lua scripts claim and release shards atomically, checked against the slot's status,
so a shard is never exported by two jobs and no job starts one once a pause or cancel is asked.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from django.db import router, transaction
from django.db.models import QuerySet
from redis import Redis
from redis.exceptions import RedisError

from django_report_export.conf import export_settings
from django_report_export.exceptions import StatusUnavailable
from django_report_export.formats.base import FormatWriter
from django_report_export.keys import key_from_json, key_to_json
from django_report_export.models import ReportExport, ReportExportShard, Status
from django_report_export.registry import ExportService
from django_report_export.status import slot_key

KEY_TEMPLATE = "report_export:shards:{export_id}"
#: Shard leases outlive a lost export by this long at most (they are deleted when it ends).
KEY_TTL_SECONDS = 7 * 24 * 3600

PENDING = "pending"
DONE = "done"
FAILED = "failed"
RUN_PREFIX = "run:"

# KEYS[1] slot hash, KEYS[2] shard hash. ARGV: export id, token, now, shard count, Running.
# Claims the first pending shard for ``token`` if the slot runs this export with no pause or
# cancel requested. Returns its index, or -1.
CLAIM = """
local slot = redis.call('HMGET', KEYS[1], 'id', 'status', 'request')
if slot[1] ~= ARGV[1] or slot[2] ~= ARGV[5] or (slot[3] and slot[3] ~= '') then
  return -1
end
for i = 0, tonumber(ARGV[4]) - 1 do
  local key = tostring(i)
  if redis.call('HGET', KEYS[2], key) == 'pending' then
    redis.call('HSET', KEYS[2], key, 'run:' .. ARGV[2], key .. ':hb', ARGV[3])
    redis.call('EXPIRE', KEYS[2], ARGV[6])
    return i
  end
end
return -1
"""

# KEYS[1] slot hash, KEYS[2] shard hash. ARGV: index, token, now, processed ('' to keep).
# Marks the shard alive if ``token`` still holds it. Returns {held: 1, 0, or -1 when the shard
# hash is gone, slot status, slot id, slot request}.
BEAT = """
local key = ARGV[1]
local state = redis.call('HGET', KEYS[2], key)
local held = state == ('run:' .. ARGV[2])
if held then
  redis.call('HSET', KEYS[2], key .. ':hb', ARGV[3])
  if ARGV[4] ~= '' then
    redis.call('HSET', KEYS[2], key .. ':n', ARGV[4])
  end
end
local slot = redis.call('HMGET', KEYS[1], 'status', 'id', 'request')
local answer = held and 1 or 0
if not state and redis.call('EXISTS', KEYS[2]) == 0 then
  answer = -1
end
return {answer, slot[1] or 'missing', slot[2] or '', slot[3] or ''}
"""

# KEYS[1] shard hash. ARGV: ttl, now, then (index, state, processed) triples. Writes the state
# of every shard that has none (all of them after Redis lost the hash), never overwriting one
# a job wrote meanwhile. Returns how many it wrote.
REBUILD = """
local written = 0
for i = 3, #ARGV, 3 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('HSET', KEYS[1], ARGV[i] .. ':hb', ARGV[2], ARGV[i] .. ':n', ARGV[i + 2])
    written = written + 1
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return written
"""

# KEYS[1] shard hash. ARGV: index, expected state, new state, then field/value pairs.
# Moves the shard to the new state only from the expected one. Returns 1 if it did.
MOVE = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3], unpack(ARGV, 4))
return 1
"""


def shards_key(export_id: Any) -> str:
    return KEY_TEMPLATE.format(export_id=export_id)


# --- planning ------------------------------------------------------------------------------


def shard_count(export: ReportExport, service: ExportService, total: int) -> int:
    """How many shards ``total`` rows of ``export`` are split into (1: not sharded)."""
    requested = export.shards if export.shards is not None else service.shards
    if requested is None:
        rows = export_settings.SHARD_ROWS
        requested = math.ceil(total / rows) if rows else 1
    return max(1, min(requested, export_settings.MAX_SHARDS, total))


def chunk_separator(writer: FormatWriter) -> bytes | None:
    """The bytes a writer puts between two chunks (a JSON comma), read off the writer itself;
    ``None`` if its chunks differ by more than a prefix, which sharding cannot assemble."""
    if not writer.shardable:
        return None
    row = [(None,) * len(writer.columns)]
    try:
        later, first = writer.encode_rows(row, first=False), writer.encode_rows(row, first=True)
    except Exception:  # a writer that refuses an all-NULL row: export unsharded
        return None
    if not later.endswith(first):
        return None
    return later[: len(later) - len(first)]


def plan(
    export: ReportExport,
    service: ExportService,
    queryset: QuerySet[Any],
    writer: FormatWriter,
    total: int,
) -> list[ReportExportShard]:
    """The export's shards: those planned before, else new ones if it is to be sharded.

    An export that was started unsharded and has written rows stays unsharded.
    """
    shards = list(export.shard_set.order_by("index"))
    if shards or export.checkpoint.get("processed") or export.checkpoint.get("parts"):
        return shards
    count = shard_count(export, service, total)
    if count < 2 or chunk_separator(writer) is None:
        return []
    keys = queryset.values_list("pk", flat=True)
    try:
        ends = [
            key_to_json(queryset.model, keys[total * index // count - 1])
            for index in range(1, count)
        ]
    except IndexError:  # rows were deleted since they were counted: export them unsharded
        return []
    bounds = [None, *ends, None]
    with transaction.atomic(using=router.db_for_write(ReportExportShard)):
        return ReportExportShard.objects.bulk_create(
            ReportExportShard(
                export=export, index=index, after_key=bounds[index], last_key=bounds[index + 1]
            )
            for index in range(count)
        )


def shard_queryset(queryset: QuerySet[Any], shard: ReportExportShard) -> QuerySet[Any]:
    model = queryset.model
    if shard.after_key is not None:
        queryset = queryset.filter(pk__gt=key_from_json(model, shard.after_key))
    if shard.last_key is not None:
        queryset = queryset.filter(pk__lte=key_from_json(model, shard.last_key))
    return queryset


# --- leases in Redis -----------------------------------------------------------------------


@dataclass(frozen=True)
class ShardState:
    state: str
    heartbeat: float
    processed: int
    error: str = ""

    @property
    def token(self) -> str:
        return self.state[len(RUN_PREFIX) :] if self.state.startswith(RUN_PREFIX) else ""


@dataclass(frozen=True)
class Beat:
    held: bool
    #: The export's shard hash is gone (Redis flushed or restarted): nobody holds anything.
    lost_hash: bool
    slot_status: str
    slot_id: str
    request: str


class ShardStore:
    """The shard hash of one export: claims, heartbeats and state changes."""

    def __init__(self, connection: Redis, export: ReportExport) -> None:
        self.redis = connection
        self.export = export
        self.key = shards_key(export.pk)
        self.slot_key = slot_key(export.slot)
        self._claim = connection.register_script(CLAIM)
        self._beat = connection.register_script(BEAT)
        self._move = connection.register_script(MOVE)
        self._rebuild = connection.register_script(REBUILD)

    def call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return script(keys=keys, args=[str(arg) for arg in args])
        except RedisError as exc:
            raise StatusUnavailable(f"Redis did not answer for the export's shards: {exc}") from exc

    def claim(self, token: str, count: int, now: float) -> int | None:
        index = self.call(
            self._claim,
            [self.slot_key, self.key],
            [self.export.pk, token, now, count, int(Status.RUNNING), KEY_TTL_SECONDS],
        )
        return None if int(index) < 0 else int(index)

    def beat(self, index: int, token: str, now: float, processed: int | None = None) -> Beat:
        held, status, slot_id, request = self.call(
            self._beat,
            [self.slot_key, self.key],
            [index, token, now, "" if processed is None else processed],
        )
        held = int(held)
        return Beat(held == 1, held == -1, _text(status), _text(slot_id), _text(request))

    def move(self, index: int, expected: str, state: str, **values: Any) -> bool:
        args: list[Any] = [index, expected, state]
        for name, value in values.items():
            args += [f"{index}:{name}", value]
        return bool(self.call(self._move, [self.key], args))

    def read(self) -> dict[int, ShardState]:
        try:
            raw = cast(Mapping[bytes, bytes], self.redis.hgetall(self.key))
        except RedisError as exc:
            raise StatusUnavailable(f"Redis did not answer for the export's shards: {exc}") from exc
        fields = {_text(name): _text(value) for name, value in raw.items()}
        return {
            int(name): ShardState(
                state=value,
                heartbeat=float(fields.get(f"{name}:hb") or 0),
                processed=int(fields.get(f"{name}:n") or 0),
                error=fields.get(f"{name}:error", ""),
            )
            for name, value in fields.items()
            if name.isdigit()
        }

    def rebuild(self, shards: list[ReportExportShard], now: float) -> None:
        """Give every shard without a state in Redis its state from the database: all of them
        for a new export or after Redis lost the hash; a state a job wrote is never replaced."""
        args: list[Any] = [KEY_TTL_SECONDS, now]
        for shard in shards:
            if shard.done:
                state = DONE
            elif shard.run_token:
                state = RUN_PREFIX + shard.run_token
            else:
                state = PENDING
            args += [shard.index, state, shard.checkpoint.get("processed", 0)]
        self.call(self._rebuild, [self.key], args)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def forget_shards(export: ReportExport, connection: Redis) -> None:
    """Delete an ended export's shards: their rows and their leases in Redis."""
    ReportExportShard.objects.filter(export=export).delete()
    _delete_leases(export, connection)


def release_shards(export: ReportExport, connection: Redis) -> None:
    """No shard run may save a checkpoint or hold a lease any more; the leases are rebuilt from
    the database when the export runs again."""
    ReportExportShard.objects.filter(export=export, done=False).update(run_token="")
    _delete_leases(export, connection)


def _delete_leases(export: ReportExport, connection: Redis) -> None:
    with contextlib.suppress(RedisError):
        connection.delete(shards_key(export.pk))
