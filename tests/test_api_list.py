"""GET report/: the services the caller may read, with formats and current status."""

import pytest
from rest_framework.test import APIClient

from .support.demo import DEMO_FORMATS
from .support.keyed.exports import ORDER_ROW
from .support.users import make_user

pytestmark = pytest.mark.django_db(transaction=True)


def test_superuser_sees_all_sixteen_services_with_the_seed_formats(api):
    response = api.get("/api/report/")
    assert response.status_code == 200
    listed = {item["service"]: item for item in response.json()}
    assert listed.pop(ORDER_ROW)["formats"] == ["json", "xml", "xlsx", "jsonl"]  # the suite's
    assert {name: item["formats"] for name, item in listed.items()} == DEMO_FORMATS
    order = listed["order"]
    assert order["status"] == 0
    assert order["status_name"] == "Ready"
    assert order["url"] == "http://testserver/api/report/order/status"
    assert order["fields"][:5] == ["id", "number", "created_at", "status", "customer_email"]
    assert order["fields"][-4:] == ["billing_address", "shipping_address", "lines", "payments"]
    assert not [name for name in order["fields"] if "__" in name]
    kinds = {column["name"]: column["kind"] for column in order["columns"]}
    assert (kinds["total"], kinds["billing_address"], kinds["lines"]) == ("value", "object", "list")
    assert "created_after" in order["filters"]


def test_user_sees_only_the_services_it_may_read():
    client = APIClient()
    client.force_login(make_user("clerk", "shop.view_product", "shop.view_order"))
    names = [item["service"] for item in client.get("/api/report/").json()]
    assert sorted(names) == ["order", ORDER_ROW, "product"]  # orderRow: the orders' too


def test_admin_user_service_needs_the_user_view_permission():
    client = APIClient()
    client.force_login(make_user("hr", "auth.view_user"))
    assert [item["service"] for item in client.get("/api/report/").json()] == ["adminUser"]


def test_user_without_any_permission_sees_an_empty_list():
    client = APIClient()
    client.force_login(make_user("nobody"))
    response = client.get("/api/report/")
    assert response.status_code == 200
    assert response.json() == []


def test_listing_shows_the_current_status(api, worker):
    api.post("/api/report/product/start?format=csv")
    listed = {item["service"]: item for item in api.get("/api/report/").json()}
    assert listed["product"]["status"] == 1
    worker()
    listed = {item["service"]: item for item in api.get("/api/report/").json()}
    assert listed["product"]["status"] == 5
    assert listed["product"]["status_name"] == "Finished"


def test_inactive_user_is_not_authenticated():
    user = make_user("gone", "shop.view_product")
    client = APIClient()
    client.force_login(user)
    user.is_active = False
    user.save()
    assert client.get("/api/report/").status_code == 401
