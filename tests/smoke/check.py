"""Run from the smoke project's folder with the wheel installed: the app's checks, migrations,
templates, static files and every module must come from the wheel."""

import importlib
import os
import pkgutil
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import django
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.template.loader import get_template

django.setup()

import django_report_export  # noqa: E402

package = os.path.dirname(django_report_export.__file__)
assert "site-packages" in package, f"the app was imported from {package}, not the wheel"
#: Database drivers of the optional extras: a module of the package that needs one (a reader
#: for that database) is only imported by the package when that database is in use.
OPTIONAL_DRIVERS = {"MySQLdb", "psycopg"}
for module in pkgutil.walk_packages(django_report_export.__path__, "django_report_export."):
    try:
        importlib.import_module(module.name)
    except ModuleNotFoundError as missing:
        if missing.name not in OPTIONAL_DRIVERS:
            raise
        print(f"{module.name} needs {missing.name} (an optional extra): not imported")
call_command("check", fail_level="WARNING")
call_command("migrate", verbosity=0)
call_command("makemigrations", "django_report_export", check=True, dry_run=True, verbosity=0)
for template in ("change_form.html", "progress.html", "start_export.html"):
    get_template(f"django_report_export/admin/{template}")
for asset in ("progress.css", "progress.js"):
    assert finders.find(f"django_report_export/{asset}"), asset
assert os.path.exists(os.path.join(package, "py.typed"))
print(f"The wheel's django_report_export {django_report_export.__version__} works.")
