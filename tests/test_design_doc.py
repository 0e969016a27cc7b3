"""docs/design.md's module map names every module of the package."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "django_report_export"


def test_the_module_map_names_every_module() -> None:
    module_map = (ROOT / "docs" / "design.md").read_text().split("## An export's way")[0]
    modules = [
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "migrations" not in path.parts and path.name != "__init__.py"
    ]

    assert modules
    assert [module for module in modules if f"`{module}`" not in module_map] == []
