"""Loaded with -p before Django's settings: give each test process its own Huey queue and
test database, so tests never share them with a running cockpit or each other (xdist workers)."""

import os
import tempfile
from pathlib import Path

_queue_dir = Path(tempfile.mkdtemp(prefix="clutch-test-"))
# Everything a run writes (secret key, trained Lernrouter, files) stays in this run's folder.
os.environ["CLUTCH_DATA_DIR"] = str(_queue_dir)
os.environ["CLUTCH_HUEY_PATH"] = str(_queue_dir / "huey.sqlite3")
os.environ["CLUTCH_HUEY_NAME"] = f"clutch-test-{os.getpid()}"
# The test database too: two test runs at once (or a run beside a cockpit) never share a file.
os.environ["CLUTCH_TEST_SQLITE_PATH"] = str(_queue_dir / "test.sqlite3")
# Tests change tables with queryset.update() and expect the next decision to see it.
os.environ["CLUTCH_TABLES_TTL_S"] = "0"
os.environ["CLUTCH_ANOMALY_BASELINE_S"] = "0"
os.environ["CLUTCH_LAGE_TTL_S"] = "0"
