"""Ending an export, in one place for every way it ends.

Whoever ends an export (its run finishing, canceling or failing, a sharded run's coordinator,
a cancel of an export no worker holds, the recovery of a lost worker that gave up) stores the
end on the row, deletes what the export leaves behind (parts, files of other runs, shards),
shows the end in the slot and sends the signal, in that order, through ``end_export``.

An export that ends in Error keeps its checkpoint and the parts it names (``keep_for_retry``),
so that a retry (``control.retry``) continues from there; a new start in its slot, or the
cleanup command, deletes them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.dispatch import Signal
from django.utils import timezone

from django_report_export import signals
from django_report_export.connection import get_redis
from django_report_export.models import ReportExport, Status
from django_report_export.runs.leases import forget_shards, release_shards
from django_report_export.status import StatusStore, snapshot
from django_report_export.storage import (
    PartSequence,
    checkpoint_parts,
    delete_export_files,
    delete_quietly,
    export_folder,
    get_storage,
    stored_files,
)

#: The signal each end sends.
SIGNALS: dict[int, Signal] = {
    Status.FINISHED: signals.export_finished,
    Status.CANCELED: signals.export_canceled,
    Status.ERROR: signals.export_failed,
}


def end_export(
    export: ReportExport,
    status: int,
    values: Mapping[str, Any],
    *,
    run_token: str | None = None,
    only_running: bool = False,
    keep: str = "",
    parts: PartSequence | None = None,
    show: Callable[[], Any] | None = None,
) -> bool:
    """End ``export`` in ``status``: the row (``end_row``), its leftovers (``clean_up``), the
    slot (``show``, when the caller has not written it already), then the signal.

    False, and nothing else done, when ``run_token`` no longer holds the row.
    """
    if not end_row(export, status, values, run_token=run_token, only_running=only_running):
        return False
    if status == Status.ERROR:
        keep_for_retry(export, parts=parts)
    else:
        clean_up(export, keep=keep, parts=parts)
    if show is not None:
        show()
    announce(export, status)
    return True


def end_row(
    export: ReportExport,
    status: int,
    values: Mapping[str, Any],
    *,
    run_token: str | None = None,
    only_running: bool = False,
) -> bool:
    """Store ``status`` and ``values`` on the row, the run token cleared; with ``run_token``,
    only while that run holds it (and, with ``only_running``, while it is Running), the
    instance then read back. True if written."""
    if run_token is None:
        export.update_fields(status=status, run_token="", **values)
        return True
    rows = ReportExport.objects.filter(pk=export.pk, run_token=run_token)
    if only_running:
        rows = rows.filter(status=Status.RUNNING)
    if not rows.update(status=status, run_token="", **values):
        return False
    export.refresh_from_db()
    return True


def clean_up(export: ReportExport, *, keep: str = "", parts: PartSequence | None = None) -> None:
    """Delete what an ended export leaves: every file but ``keep``, the run's ``parts``, the
    shards' rows and leases."""
    delete_export_files(get_storage(), export, keep=keep)
    if parts is not None:
        parts.delete_all()
    forget_shards(export, get_redis())


def retry_parts(export: ReportExport) -> set[str]:
    """The parts a retry of ``export`` continues from: its checkpoint's and its shards'."""
    checkpoints = [export.checkpoint, *(shard.checkpoint for shard in export.shard_set.all())]
    return {part.name for checkpoint in checkpoints for part in checkpoint_parts(checkpoint)}


def keep_for_retry(export: ReportExport, *, parts: PartSequence | None = None) -> None:
    """Delete what a failed export leaves but its checkpoints and their parts: files of other
    runs, unsaved parts, the shards' leases (their rows and checkpoints stay)."""
    kept = retry_parts(export)
    storage = get_storage()
    if parts is not None:
        parts.close()
        delete_quietly(
            storage, [name for name in (*parts.names, parts.current) if name not in kept]
        )
    leftovers = stored_files(storage, export_folder(export))
    delete_quietly(storage, [name for name in leftovers if name not in kept])
    release_shards(export, get_redis())


def announce(export: ReportExport, status: int) -> None:
    SIGNALS[status].send(sender=ReportExport, export=export)


def show_run_end(
    store: StatusStore,
    export: ReportExport,
    run_token: str,
    status: int,
    values: Mapping[str, Any],
    *,
    allow_missing: bool = False,
) -> None:
    """Show in the slot that the run ``run_token`` stopped in ``status`` (Paused too), if it
    still holds the slot; a slot Redis lost is put back with ``allow_missing``."""
    written = {"status": status, "run": "", "request": "", "updated_at": timezone.now(), **values}
    result = store.transition(
        export.slot,
        written,
        expect_id=export.pk,
        expect_run=run_token,
        allowed=[Status.RUNNING],
    )
    if result.missing and allow_missing:
        store.restore(export.slot, {**snapshot(export), **written})
