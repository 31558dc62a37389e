"""Shared fixtures: fast settings, a cast of users, the default tables and logged-in clients."""

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.test import Client

from garage.defaults import ImportReport, import_defaults

PASSWORD = "correct horse battery staple"

# Every variable a default provider reads its key from; a developer's shell must not leak in.
PROVIDER_KEY_VARIABLES = ("ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY")


@pytest.fixture(autouse=True)
def fast_settings(settings, tmp_path) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # A Lernrouter trained by one test must not steer the decisions of the next.
    settings.CLUTCH_LERNROUTER_PATH = str(tmp_path / "lernrouter.joblib")


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path_factory) -> None:
    """No provider key, secrets file or admin password from the machine running the tests."""
    for name in (*PROVIDER_KEY_VARIABLES, "CLUTCH_ADMIN_PASSWORD", "CLUTCH_ADMIN_USER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(
        "CLUTCH_SECRETS_FILE", str(tmp_path_factory.getbasetemp() / "no-secrets.env")
    )


@pytest.fixture
def password() -> str:
    """The password every user of the cast logs in with."""
    return PASSWORD


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser(
        username="root", email="root@example.com", password=PASSWORD
    )


@pytest.fixture
def member(django_user_model):
    return django_user_model.objects.create_user(username="mia", password=PASSWORD)


@pytest.fixture
def outsider(django_user_model):
    return django_user_model.objects.create_user(username="otto", password=PASSWORD)


def _logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client(admin_user) -> Client:
    return _logged_in(admin_user)


@pytest.fixture
def member_client(member) -> Client:
    return _logged_in(member)


@pytest.fixture
def outsider_client(outsider) -> Client:
    return _logged_in(outsider)


@pytest.fixture
def defaults(db, settings) -> ImportReport:
    """The default tables from config/, as `make run` imports them."""
    return import_defaults(settings.CLUTCH_CONFIG_DIR)


@pytest.fixture
def config_dir(settings, tmp_path) -> Path:
    """A private copy of config/ that a test may edit or break."""
    target = tmp_path / "config"
    shutil.copytree(settings.CLUTCH_CONFIG_DIR, target)
    return target


@pytest.fixture
def edit_config(config_dir) -> Callable[[str, Callable[[Any], None]], None]:
    """Change one file of the copied config: ``edit_config("gears.json", change)``."""

    def edit(filename: str, change: Callable[[Any], None]) -> None:
        path = config_dir / filename
        data = json.loads(path.read_text(encoding="utf-8"))
        change(data)
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")

    return edit


@pytest.fixture
def db_snapshot(db) -> Callable[[], dict[str, list[dict]]]:
    """Every row of every table, to prove an operation left the database exactly as it was."""

    def snapshot() -> dict[str, list[dict]]:
        return {
            model._meta.label: list(model._base_manager.order_by("pk").values())
            for model in apps.get_models()
        }

    return snapshot


@pytest.fixture
def start_consumer(transactional_db, settings, tmp_path):
    """Start real Huey consumers in their own processes, on this test's database and queue.
    Every consumer started is stopped when the test ends."""
    import os
    import subprocess
    import sys
    import time

    from django.db import connection

    started = []

    def start(**extra_env) -> subprocess.Popen:
        env = {
            **os.environ,
            "CLUTCH_PRUEFSTAND_LATENCY": "0",
            "CLUTCH_RETRY_BASE_S": "0",
            "CLUTCH_HUEY_LOG_LEVEL": "INFO",  # its start line tells us it is ready
            **extra_env,
        }
        db = settings.DATABASES["default"]
        if connection.vendor == "sqlite":
            env["CLUTCH_SQLITE_PATH"] = db["NAME"]
        else:
            env["CLUTCH_DATABASE_URL"] = (
                f"postgresql://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:"
                f"{db['PORT'] or 5432}/{db['NAME']}"
            )
        log = tmp_path / f"consumer-{len(started)}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "manage.py",
                    "run_huey",
                    "--workers",
                    "4",
                    "--worker-type",
                    "thread",
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=settings.BASE_DIR,
                start_new_session=True,
            )
        process.log = log
        started.append(process)
        deadline = time.monotonic() + 30
        while "Huey consumer started" not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Huey consumer did not start:\n{log.read_text()}")
            time.sleep(0.05)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def huey_consumer(start_consumer):
    """One real Huey consumer in its own process."""
    return start_consumer()
