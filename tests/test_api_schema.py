"""The OpenAPI schema at /api/schema/: one path per registered service, each with that
service's formats, fields and filters, and the API refusing what the schema refuses."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from django_report_export.api.schema import ReportSchemaGenerator
from django_report_export.columns import column_names
from django_report_export.options import NAMES as OPTION_NAMES
from django_report_export.registry import ExportService, site
from testproject.shop.models import Product

from .test_api_errors import SERVICE_ENDPOINTS

OPENAPI_JSON = "application/vnd.oai.openapi+json"


def served_schema(client: APIClient | None = None) -> dict[str, Any]:
    response = (client or APIClient()).get("/api/schema/", HTTP_ACCEPT=OPENAPI_JSON)
    assert response.status_code == 200
    return json.loads(response.content)


def parameters(schema: dict[str, Any], path: str, method: str) -> dict[str, dict[str, Any]]:
    operation = schema["paths"][path][method]
    return {parameter["name"]: parameter for parameter in operation.get("parameters", [])}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return served_schema()


def test_every_service_has_paths_of_its_own_and_there_is_no_generic_one(schema):
    expected = {"/api/report/"} | {
        f"/api/report/{service.name}/{action}"
        for service in site
        for _, action in SERVICE_ENDPOINTS
    }
    assert set(schema["paths"]) == expected
    for service in site:
        for method, action in SERVICE_ENDPOINTS:
            operation = schema["paths"][f"/api/report/{service.name}/{action}"][method]
            assert operation["tags"] == [service.name]
            assert "service" not in parameters(
                schema, f"/api/report/{service.name}/{action}", method
            )


def test_start_of_admin_user_offers_admin_users_formats_only(schema):
    start = parameters(schema, "/api/report/adminUser/start", "post")
    assert start["format"]["required"] is True
    assert start["format"]["schema"] == {"type": "string", "enum": ["json", "csv", "xlsx", "jsonl"]}
    assert "xml" not in start["format"]["schema"]["enum"]
    order = parameters(schema, "/api/report/order/start", "post")
    assert "csv" not in order["format"]["schema"]["enum"]
    assert order["format"]["schema"]["enum"] == ["json", "xml", "jsonl"]  # a document: no xlsx


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("service", "export_format"), [("adminUser", "xml"), ("order", "csv"), ("order", "xlsx")]
)
def test_a_format_the_schema_leaves_out_is_400_invalid_naming_format(
    schema, api, service, export_format
):
    start = parameters(schema, f"/api/report/{service}/start", "post")
    assert export_format not in start["format"]["schema"]["enum"]
    response = api.post(f"/api/report/{service}/start?format={export_format}")
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "invalid"
    assert list(body["errors"]) == ["format"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("value", "accepted"), [("a\x00b", False), ("a b", True)])
def test_a_text_filter_refuses_nul_exactly_where_its_schema_does(schema, api, value, accepted):
    pattern = parameters(schema, "/api/report/product/start", "post")["search"]["schema"]["pattern"]
    assert bool(re.search(pattern, value)) is accepted
    response = api.post(
        "/api/report/product/start?" + urlencode({"format": "json", "search": value})
    )
    if accepted:
        assert response.status_code == 202, response.content
    else:
        assert response.status_code == 400
        assert list(response.json()["errors"]) == ["search"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("value", "accepted"), [("1e50", True), ("1.0000001e50", False)])
def test_a_number_filter_refuses_values_exactly_above_its_schemas_maximum(
    schema, api, value, accepted
):
    start = parameters(schema, "/api/report/transaction/start", "post")
    assert (float(value) <= start["amount_min"]["schema"]["maximum"]) is accepted
    response = api.post(
        "/api/report/transaction/start?" + urlencode({"format": "csv", "amount_min": value})
    )
    if accepted:
        assert response.status_code == 202, response.content
    else:
        assert response.status_code == 400
        assert list(response.json()["errors"]) == ["amount_min"]


def test_fields_are_the_services_own_comma_separated(schema):
    for service in site:
        fields = parameters(schema, f"/api/report/{service.name}/start", "post")["fields"]
        assert fields["schema"] == {
            "type": "array",
            "items": {"type": "string", "enum": column_names(service)},
            "uniqueItems": True,
        }
        assert (fields["style"], fields["explode"]) == ("form", False)


def test_filters_are_the_services_own_typed_by_their_form_fields(schema):
    for service in site:
        start = parameters(schema, f"/api/report/{service.name}/start", "post")
        options = {"timezone"} | (set(OPTION_NAMES) if "csv" in service.formats else set())
        expected = {
            "format",
            "fields",
            "compression",
            "notify",
            *options,
            *(("since", "from", "to") if service.incremental_field else ()),
            *service.get_filter_names(),
        }
        assert set(start) == expected
    product = parameters(schema, "/api/report/product/start", "post")
    assert product["category"]["schema"] == {
        "type": "integer",
        "minimum": -(2**63),
        "maximum": 2**63 - 1,
    }
    assert product["is_active"]["schema"] == {"type": "boolean"}
    # django-filter's NumberFilter refuses values above 1e50.
    assert product["price_min"]["schema"] == {"type": "number", "maximum": 1e50}
    assert product["search"]["schema"] == {"type": "string", "pattern": r"^[^\x00]*$"}
    assert product["created_after"]["schema"] == {
        "anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]
    }
    assert all(product[name]["allowEmptyValue"] for name in site.get("product").get_filter_names())
    order = parameters(schema, "/api/report/order/start", "post")
    assert order["status"]["schema"] == {
        "type": "string",
        "enum": ["pending", "paid", "shipped", "delivered", "cancelled", "refunded"],
    }
    rating = parameters(schema, "/api/report/productRating/start", "post")
    assert rating["rating_min"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 5}
    seo = parameters(schema, "/api/report/seoViews/start", "post")
    assert seo["date_from"]["schema"] == {"type": "string", "format": "date"}


def test_download_id_and_history_paging_are_typed(schema):
    download = parameters(schema, "/api/report/product/download", "get")
    assert download["id"]["schema"] == {"type": "string", "format": "uuid"}
    history = parameters(schema, "/api/report/product/history", "get")
    assert history["page"]["schema"] == {"type": "integer", "minimum": 1}
    assert history["page_size"]["schema"] == {"type": "integer", "minimum": 1}


class LateExport(ExportService):
    model = Product
    fields = ("id", "sku")
    formats = ("json",)


def test_the_schema_follows_the_registry_and_is_built_once_per_state(monkeypatch):
    builds: list[bool] = []
    build = SchemaGenerator.get_schema

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        builds.append(True)
        return build(self, *args, **kwargs)

    monkeypatch.setattr(SchemaGenerator, "get_schema", counted)
    ReportSchemaGenerator.clear_cache()
    first = ReportSchemaGenerator().get_schema(public=True)
    assert ReportSchemaGenerator().get_schema(public=True) == first
    assert len(builds) == 1
    site.register("lateProduct", LateExport)
    try:
        late = ReportSchemaGenerator().get_schema(public=True)
        start = parameters(late, "/api/report/lateProduct/start", "post")
        assert start["format"]["schema"]["enum"] == ["json"]
    finally:
        site.unregister("lateProduct")
    assert (
        "/api/report/lateProduct/start"
        not in ReportSchemaGenerator().get_schema(public=True)["paths"]
    )


def test_a_copy_of_the_cached_schema_is_handed_out():
    schema = ReportSchemaGenerator().get_schema(public=True)
    schema["paths"].clear()
    assert ReportSchemaGenerator().get_schema(public=True)["paths"]


def test_drf_spectacular_s_own_generator_still_describes_the_generic_path():
    generic = SchemaGenerator().get_schema(public=True)
    start = parameters(generic, "/api/report/{service}/start", "post")
    assert set(start["service"]["schema"]["enum"]) == set(site.names())
    assert "/api/report/product/start" not in generic["paths"]
