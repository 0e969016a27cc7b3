import re
from pathlib import Path
from typing import ClassVar

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_report_export.conf import DEFAULTS, SETTINGS, export_settings, literal

SETTINGS_REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "settings.md"

OTHER_VALUES = {
    "QUEUE": "exports",
    "STORAGE": "private-exports",
    "STORAGE_PREFIX": "elsewhere",
    "CHUNK_SIZE": 17,
    "HEARTBEAT_INTERVAL": 2,
    "STALE_AFTER": 9,
    "CANCEL_TIMEOUT": 3,
    "CHECKPOINT_INTERVAL": 0,
    "MAX_RETRIES": 1,
    "RETENTION_DAYS": 2,
    "SLOT_SCOPE": "user",
    "CSV_FORMULA_GUARD": False,
    "DOWNLOAD": "redirect",
    "PERMISSION_DENIED_STATUS": 403,
    "DATABASE_ALIAS": "replica",
    "REDIS_TIMEOUT": 0.25,
    "JOB_TIMEOUT": 60,
    "FORMATS": {"x": "y.Z"},
    "FAST_PATH": False,
    "SQLITE_READ_PROCESS": False,
    "SHARD_ROWS": None,
    "COUNT_ESTIMATE_ABOVE": None,
    "MAX_SHARDS": 8,
    "PERMISSION_CACHE_SECONDS": 0,
    "CSV_DELIMITER": ";",
    "CSV_BOM": True,
    "CSV_LINE_ENDING": "crlf",
    "CSV_DECIMAL_SEPARATOR": ",",
    "CSV_HEADER": "labels",
    "TIMEZONE": "Europe/Berlin",
    "WEBHOOKS": [{"url": "https://hooks.example/x", "secret": "s"}],
    "NOTIFY_QUEUE": "default",
    "WEBHOOK_TIMEOUT": 0.5,
    "WEBHOOK_RETRY_INTERVALS": [],
    "BASE_URL": "https://shop.example",
}


def test_every_key_has_a_test_value():
    assert set(OTHER_VALUES) == set(DEFAULTS)


@pytest.mark.parametrize("key", sorted(DEFAULTS))
def test_defaults(key, settings):
    settings.REPORT_EXPORT = {}
    assert getattr(export_settings, key) == DEFAULTS[key]


@pytest.mark.parametrize("key", sorted(DEFAULTS))
def test_override_settings_reaches_every_key(key):
    assert getattr(export_settings, key) != OTHER_VALUES[key]
    with override_settings(REPORT_EXPORT={key: OTHER_VALUES[key]}):
        assert getattr(export_settings, key) == OTHER_VALUES[key]
    assert getattr(export_settings, key) != OTHER_VALUES[key]


def test_a_setting_is_read_again_after_a_change():
    """A value is kept after its first read; a change of REPORT_EXPORT forgets every one."""
    before = {key: getattr(export_settings, key) for key in SETTINGS}
    with override_settings(REPORT_EXPORT=OTHER_VALUES):
        assert {key: getattr(export_settings, key) for key in SETTINGS} == OTHER_VALUES
    assert {key: getattr(export_settings, key) for key in SETTINGS} == before


@pytest.mark.parametrize("key", sorted(DEFAULTS))
def test_every_key_has_a_rule_a_type_and_a_check(key):
    setting = SETTINGS[key]
    assert setting.name == key
    assert setting.rule.type
    assert setting.check is not None or setting.rule.problem(key, object()) is None


def documented_settings() -> dict[str, tuple[str, str, str]]:
    """The settings reference's table: key -> (default, type, check) cells, as written."""
    rows = {}
    for line in SETTINGS_REFERENCE.read_text().splitlines():
        cells = [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)]
        if len(cells) == 7 and re.fullmatch(r"`[A-Z_]+`", cells[1]):
            rows[cells[1].strip("`")] = (cells[2], cells[3], cells[4])
    return rows


def test_the_settings_reference_agrees_with_the_table_of_settings():
    expected = {}
    for key, setting in SETTINGS.items():
        checks = [f"`E{setting.check:03d}`"] if setting.check is not None else []
        checks += [f"`{check}`" for check in setting.also]
        expected[key] = (
            f"`{literal(setting.default)}`",
            f"`{setting.rule.type}`",
            ", ".join(checks) or "—",
        )
    assert documented_settings() == expected


class TestInvalid:
    CASES: ClassVar = [
        ("SLOT_SCOPE", "team"),
        ("DOWNLOAD", "ftp"),
        ("PERMISSION_DENIED_STATUS", 404),
        ("CSV_DELIMITER", "tab"),
        ("CSV_BOM", 1),
        ("CSV_LINE_ENDING", "cr"),
        ("CSV_DECIMAL_SEPARATOR", "·"),
        ("CSV_HEADER", "verbose"),
    ]

    @pytest.mark.parametrize(("key", "value"), CASES)
    def test_out_of_choices_is_improperly_configured(self, key, value):
        with override_settings(REPORT_EXPORT={key: value}), pytest.raises(ImproperlyConfigured):
            getattr(export_settings, key)

    def test_unknown_attribute(self):
        with pytest.raises(AttributeError):
            export_settings.NOPE  # noqa: B018

    def test_not_a_dict(self):
        with override_settings(REPORT_EXPORT=["QUEUE"]), pytest.raises(ImproperlyConfigured):
            export_settings.QUEUE  # noqa: B018


@pytest.mark.django_db
@pytest.mark.parametrize("mode", [None, "on_db_commit", "request_finished"])
def test_jobs_are_queued_at_once_whatever_the_rq_commit_mode(mode, settings, redis_db):
    """django-rq 4 defers a job queued inside a transaction to its commit by default; the
    package's queue does not, so an unreachable Redis is reported to the caller."""
    from django.db import transaction

    from django_report_export.connection import get_queue

    settings.RQ = {"COMMIT_MODE": mode} if mode else {}
    queue = get_queue()
    with transaction.atomic():
        queue.enqueue_call("builtins.len", args=("ab",))
        assert queue.count == 1
