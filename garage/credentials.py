"""Where provider keys come from: the environment first, then an optional secrets file.

Keys are looked up at call time and never stored in the database, a trip, a log or a page.
The secrets file (``CLUTCH_SECRETS_FILE``, default ``data/secrets.env``) holds ``NAME=value``
lines, for machines where exporting variables to the worker is awkward.
"""

import os
from functools import cache
from pathlib import Path

from django.conf import settings


def secrets_file() -> Path:
    return Path(os.environ.get("CLUTCH_SECRETS_FILE", settings.DATA_DIR / "secrets.env"))


@cache
def _file_values(path: Path, mtime: float) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        values[name.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def lookup(name: str) -> str | None:
    """The value of one credential variable, or None when it is unset or empty."""
    value = os.environ.get(name, "").strip()
    if value:
        return value
    path = secrets_file()
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None
    return _file_values(path, mtime).get(name) or None


def first_present(names: list[str]) -> str | None:
    """The name of the first variable in ``names`` that holds a value."""
    for name in names:
        if lookup(name):
            return name
    return None
