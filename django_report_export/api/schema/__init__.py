"""OpenAPI description of the report endpoints, for drf-spectacular when it is installed.

``document`` (``endpoints``) decorates the viewset; ``ReportSchemaGenerator`` (``generator``,
drf-spectacular's ``DEFAULT_GENERATOR_CLASS``) puts each registered service on paths of its
own, with the query parameters of ``parameters``. The description is checked against the live
API by ``tests/test_hostile.py`` (schemathesis): every request the schema admits is accepted,
and every one it refuses is a 4xx.
"""

from django_report_export.api.schema.endpoints import document
from django_report_export.api.schema.generator import ReportAutoSchema, ReportSchemaGenerator

__all__ = ["ReportAutoSchema", "ReportSchemaGenerator", "document"]
