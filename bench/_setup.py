"""A throwaway clutch installation for benchmarks: its own data dir, migrated, defaults loaded."""

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def django_in_tempdir(prefix: str = "clutch-bench-") -> Path:
    data = Path(os.environ.get("CLUTCH_BENCH_DATA_DIR") or tempfile.mkdtemp(prefix=prefix))
    os.environ["CLUTCH_DATA_DIR"] = str(data)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clutch_site.settings")
    os.environ.setdefault("CLUTCH_LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from io import StringIO

    call_command("clutch_setup", verbosity=0, stdout=StringIO())
    return data
