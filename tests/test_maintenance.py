"""Deleting old exports through ``maintenance`` (what ``report_export cleanup`` does): a real
Redis, burst RQ workers in this process, the files on a real storage."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from django_report_export import control, maintenance
from django_report_export.models import ReportExport, Status
from django_report_export.registry import site
from testproject.shop.factories import ProductFactory

pytestmark = pytest.mark.django_db(transaction=True)


def aged(export_id, days: float) -> None:
    when = timezone.now() - dt.timedelta(days=days)
    ReportExport.objects.filter(pk=export_id).update(created_at=when, finished_at=when)


def test_old_ended_exports_are_deleted_with_their_files_and_slot(worker, export_root):
    ProductFactory.create_batch(5)
    service = site.get("product")
    old = control.start(service, control.parse_request(service, {"format": ["csv"]}))
    worker()
    old_file = export_root / ReportExport.objects.get(pk=old["id"]).file_name
    assert old_file.exists()
    aged(old["id"], 40)
    category = site.get("category")
    active = control.start(category, control.parse_request(category, {"format": ["csv"]}))
    aged(active["id"], 400)  # Starting for ages: not ended, so kept

    found = list(maintenance.old_exports(30))
    assert [str(export.pk) for export in found] == [old["id"]]
    maintenance.delete_export(found[0])

    assert not old_file.exists()
    assert {str(pk) for pk in ReportExport.objects.values_list("pk", flat=True)} == {active["id"]}
    # The slot no longer shows the deleted export: it is rebuilt from what is left.
    assert control.get_status(service)["status"] == Status.READY
    assert control.get_status(category)["id"] == active["id"]
