"""The rows an export will write, for its progress: counted, or on PostgreSQL, above
``COUNT_ESTIMATE_ABOVE`` rows, the planner's estimate (a count there is a second scan of the
whole table before the first row; docs/deployment.md, "What limits an export").
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import QuerySet

from django_report_export.conf import export_settings


def count_rows(queryset: QuerySet[Any]) -> int:
    """The rows of ``queryset``: counted, or the planner's estimate of more than
    ``COUNT_ESTIMATE_ABOVE`` on PostgreSQL."""
    above = export_settings.COUNT_ESTIMATE_ABOVE
    if above is not None and connections[queryset.db].vendor == "postgresql":
        estimate = planner_rows(queryset)
        if estimate > above:
            return estimate
    return queryset.count()


def planner_rows(queryset: QuerySet[Any]) -> int:
    """PostgreSQL's estimate of the rows of ``queryset`` (``EXPLAIN``, nothing read)."""
    compiler = queryset.order_by().values("pk").query.get_compiler(queryset.db)
    try:
        sql, params = compiler.as_sql()
    except EmptyResultSet:  # a filter no row can match (a value out of the column's range)
        return 0
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])
