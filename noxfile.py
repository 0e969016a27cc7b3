"""The supported matrix: ``nox`` runs the fast part of the suite (``-m "not slow"``) on SQLite
for every Python x Django combination, and once on the lowest versions the pins allow.

    nox -l                                   # the sessions
    nox -s "tests-3.13(django='6.1')"        # one combination
    nox -s lowest

Each session needs a Redis database of its own: ``REDIS_URL`` (default
``redis://127.0.0.1:6379/12``, the one scripts/test gives the matrix), and keeps its SQLite
files in its own folder. Virtualenvs are made and filled by uv when it is installed (the
``test`` extra has it; a tenth of pip's time, its cache shared by the sessions), else by
virtualenv and pip; they are reused between runs (``-R`` also skips the install).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import nox
from packaging.requirements import Requirement

PYTHONS = ["3.11", "3.12", "3.13"]
DJANGOS = ["5.2", "6.0", "6.1"]
#: Django 6.0 and later need Python 3.12.
MIN_PYTHON = {"5.2": "3.11", "6.0": "3.12", "6.1": "3.12"}
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
PYTEST = ["pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider"]

# uv compiles no bytecode unless asked (pip does): with PYTHONDONTWRITEBYTECODE set, every
# process a test starts would compile its imports from source again.
os.environ.setdefault("UV_COMPILE_BYTECODE", "1")
nox.options.reuse_venv = "yes"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.download_python = "never"  # the machine's interpreters (pyenv's), never a download
nox.options.sessions = ["tests", "lowest"]


def _runs(command: str) -> bool:
    found = shutil.which(command)
    return found is not None and subprocess.run([found, "-V"], capture_output=True).returncode == 0


def _find_pyenv_pythons() -> None:
    """Put pyenv's interpreters on PATH when a matrix ``pythonX.Y`` is not found there, or is
    only a pyenv shim that the active pyenv version does not serve."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = [
        directory
        for version in PYTHONS
        if not _runs(f"python{version}")
        for directory in sorted(glob.glob(str(root / "versions" / f"{version}.*" / "bin")))[-1:]
    ]
    os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_find_pyenv_pythons()


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _run_suite(session: nox.Session) -> None:
    session.env["REDIS_URL"] = os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)
    session.env["DATABASE_URL"] = ""  # SQLite
    session.env["DEMO_VAR_DIR"] = session.create_tmp()
    session.run("python", "-c", PRINT_VERSIONS)
    session.run(*PYTEST, *session.posargs)


#: Prints the versions the session resolved (they go in the matrix of docs/deployment.md).
PRINT_VERSIONS = (
    "import importlib.metadata as m, sys; print('python', sys.version.split()[0], *("
    "f'{n} {m.version(n)}' for n in ('Django', 'djangorestframework', 'django-filter',"
    " 'django-rq', 'rq', 'redis')))"
)


def supported(python: str, django: str) -> bool:
    return _version(python) >= _version(MIN_PYTHON[django])


def other_sessions(python: str, django: str) -> list[str]:
    """Every session but the one of ``python`` x ``django`` (scripts/test runs the whole suite
    there): the other supported combinations, then ``lowest``."""
    return [
        f"tests-{p}(django='{d}')"
        for p in PYTHONS
        for d in DJANGOS
        if supported(p, d) and (p, d) != (python, django)
    ] + ["lowest"]


@nox.session(python=PYTHONS)
@nox.parametrize("django", DJANGOS)
def tests(session: nox.Session, django: str) -> None:
    """The fast suite on SQLite with the newest releases pip resolves for one Django."""
    python = str(session.python)
    if not supported(python, django):
        session.skip(f"Django {django} needs Python {MIN_PYTHON[django]} or later")
    session.install("-e", ".[test]", f"Django~={django}.0")
    _run_suite(session)


def lowest_pins() -> list[str]:
    """The runtime dependencies of pyproject.toml at the lowest versions they allow."""
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    pins = []
    for line in project["dependencies"]:
        requirement = Requirement(line)
        lower = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if len(lower) != 1:
            raise ValueError(f"not one lower bound: {line!r}")
        extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
        pins.append(f"{requirement.name}{extras}=={lower[0]}")
    return pins


@nox.session(python="3.11")
def lowest(session: nox.Session) -> None:
    """The fast suite on SQLite with each runtime dependency at its lowest allowed version
    (the test tools at their newest)."""
    session.install("-e", ".[test]", *lowest_pins())
    _run_suite(session)
