"""A granted read permission is remembered for ``PERMISSION_CACHE_SECONDS``, and no longer.

A status poll then makes no query beyond authentication; a grant is honoured at once; a
revocation made in this process is honoured at once, one made in another process (another
gunicorn worker, a shell) within the bound.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from django_report_export.api import permissions
from django_report_export.registry import site

from .support.users import make_user
from .support.workers import ROOT, worker_env

pytestmark = pytest.mark.django_db(transaction=True)

STATUS = "/api/report/product/status"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(permissions, "_clock", fake)
    permissions.forget_grants()
    yield fake
    permissions.forget_grants()


@pytest.fixture
def bound(settings):
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "PERMISSION_CACHE_SECONDS": 5}
    return 5


def view_product() -> Permission:
    return Permission.objects.get(content_type__app_label="shop", codename="view_product")


def logged_in(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def in_another_process(code: str) -> None:
    """Run ``code`` in a fresh Django process on this test's database: no signal of it
    reaches this process."""
    script = f"import django; django.setup()\n{code}"
    subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=worker_env(), check=True, timeout=120
    )


def test_status_polls_query_only_the_session_and_the_user(bound):
    client = logged_in(make_user("clerk", "shop.view_product"))
    assert client.get(STATUS).status_code == 200  # the grant and the slot are remembered
    with CaptureQueriesContext(connection) as queries:
        response = client.get(STATUS)
    assert response.status_code == 200
    tables = [query["sql"].split(" FROM ")[1].split()[0] for query in queries]
    assert tables == [
        connection.ops.quote_name("django_session"),
        connection.ops.quote_name("auth_user"),
    ]


def test_without_the_memory_each_poll_also_reads_the_permissions(settings):
    settings.REPORT_EXPORT = {**settings.REPORT_EXPORT, "PERMISSION_CACHE_SECONDS": 0}
    client = logged_in(make_user("clerk", "shop.view_product"))
    assert client.get(STATUS).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert client.get(STATUS).status_code == 200
    assert len(queries) == 4  # session, user, user permissions, group permissions


def test_grants_are_remembered_by_service(bound, clock):
    class StaffOnly(site.get("product").__class__):
        def has_permission(self, user):
            return super().has_permission(user) and user.is_staff

    site.register("staffProduct", StaffOnly)
    try:
        client = logged_in(make_user("clerk", "shop.view_product"))
        assert client.get(STATUS).status_code == 200
        assert client.get("/api/report/staffProduct/status").status_code == 401
    finally:
        site.unregister("staffProduct")


def test_a_grant_is_honoured_at_once(bound):
    user = make_user("clerk")
    client = logged_in(user)
    assert client.get(STATUS).status_code == 401
    # Through the relation's table: no m2m_changed signal, so nothing is forgotten here.
    get_user_model().user_permissions.through.objects.create(user=user, permission=view_product())
    assert client.get(STATUS).status_code == 200


def test_a_revocation_in_this_process_is_honoured_at_once(bound):
    user = make_user("clerk", "shop.view_product")
    client = logged_in(user)
    assert client.get(STATUS).status_code == 200
    user.user_permissions.remove(view_product())
    response = client.get(STATUS)
    assert response.status_code == 401
    assert response.json()["type"] == "permission_denied"


def test_a_revocation_is_forgotten_again_when_its_transaction_commits(bound):
    user = make_user("clerk", "shop.view_product")
    client = logged_in(user)
    assert client.get(STATUS).status_code == 200
    with transaction.atomic():
        user.user_permissions.remove(view_product())
        # Another thread, whose connection still sees the grant, remembers it meanwhile.
        permissions._grants[(user._meta.label_lower, user.pk)] = {"product": 2000.0}
    assert client.get(STATUS).status_code == 401


def test_a_group_change_in_this_process_is_honoured_at_once(bound):
    user = make_user("clerk")
    group = Group.objects.create(name="reporters")
    group.permissions.add(view_product())
    user.groups.add(group)
    client = logged_in(user)
    assert client.get(STATUS).status_code == 200
    group.permissions.remove(view_product())
    assert client.get(STATUS).status_code == 401
    group.permissions.add(view_product())
    assert client.get(STATUS).status_code == 200
    user.groups.remove(group)
    assert client.get(STATUS).status_code == 401


def test_a_revocation_in_another_process_is_honoured_after_the_bound(bound, clock):
    user = make_user("clerk", "shop.view_product")
    client = logged_in(user)
    assert client.get(STATUS).status_code == 200
    in_another_process(
        "from django.contrib.auth import get_user_model\n"
        "from django.contrib.auth.models import Permission\n"
        f"user = get_user_model().objects.get(pk={user.pk})\n"
        "user.user_permissions.remove(\n"
        "    Permission.objects.get(content_type__app_label='shop', codename='view_product')\n"
        ")\n"
    )
    assert not get_user_model().objects.get(pk=user.pk).has_perm("shop.view_product")
    clock.now += bound - 0.5
    assert client.get(STATUS).status_code == 200  # within the bound: still remembered
    clock.now += 0.5
    response = client.get(STATUS)
    assert response.status_code == 401
    assert response.json()["type"] == "permission_denied"


def test_a_lost_superuser_flag_is_honoured_after_the_bound(bound, clock):
    user = make_user("root", is_superuser=True)
    client = logged_in(user)
    assert client.get(STATUS).status_code == 200
    get_user_model().objects.filter(pk=user.pk).update(is_superuser=False)  # no signal
    clock.now += bound
    assert client.get(STATUS).status_code == 401


def test_a_deactivated_user_is_refused_at_once(bound):
    user = make_user("clerk", "shop.view_product")
    client = logged_in(user)
    assert client.get(STATUS).status_code == 200
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)  # no signal
    assert client.get(STATUS).status_code == 401


def test_a_new_user_never_inherits_the_grants_of_a_deleted_one(bound):
    user = make_user("clerk", "shop.view_product")
    pk = user.pk
    assert logged_in(user).get(STATUS).status_code == 200
    user.delete()
    successor = make_user("intern", id=pk)
    assert logged_in(successor).get(STATUS).status_code == 401
