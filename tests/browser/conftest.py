"""Browser tests: the real app served by Daphne with a real Huey worker, on the test
database, driven by headless Chromium (Debian's `chromium`) through Playwright."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "screenshots"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the dev extra installs it
    sync_playwright = None


def pytest_collection_modifyitems(config, items):
    missing = (
        "the playwright package is not installed (pip install -e '.[dev]')"
        if sync_playwright is None
        else f"{CHROMIUM} is missing (apt-get install chromium)"
        if not Path(CHROMIUM).exists()
        else ""
    )
    for item in items:
        if "browser" in item.keywords and missing:
            item.add_marker(pytest.mark.skip(reason=f"browser test skipped: {missing}"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, process: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def live_site(django_db_setup, tmp_path_factory):
    """Daphne and a Huey worker in their own processes, on the test database; the base URL."""
    from django.conf import settings
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("browser tests serve the embedded SQLite default")
    logs = tmp_path_factory.mktemp("live-site")
    port = _free_port()
    env = {
        **os.environ,
        "CLUTCH_SQLITE_PATH": settings.DATABASES["default"]["NAME"],
        "CLUTCH_PRUEFSTAND_LATENCY": "0.3",  # slow enough to watch the answer stream in
        "CLUTCH_RETRY_BASE_S": "0",
        "DJANGO_SETTINGS_MODULE": "clutch_site.settings",
    }
    env.pop("CLUTCH_PRUEFSTAND", None)
    commands = {
        "web": [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                "clutch_site.asgi:application"],
        "worker": [sys.executable, "manage.py", "run_huey", "--workers", "4",
                   "--worker-type", "thread"],
    }  # fmt: skip
    processes = {}
    for name, command in commands.items():
        log = logs / f"{name}.log"
        with log.open("w") as out:
            processes[name] = subprocess.Popen(
                command,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=settings.BASE_DIR,
                start_new_session=True,
            )
        processes[name].log = log
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(base + "/login/", processes["web"], processes["web"].log)
        yield base
    finally:
        for process in processes.values():
            _stop(process)


@pytest.fixture
def chromium(transactional_db, monkeypatch):
    """One headless Chromium per test. Playwright's sync API runs an event loop in this
    thread, so the test's own ORM calls have to be allowed beside it, for this test only."""
    if sync_playwright is None or not Path(CHROMIUM).exists():
        pytest.skip("no browser")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def car(defaults, monkeypatch):
    from garage.models import FitnessCriteria

    monkeypatch.setenv("CLUTCH_PRUEFSTAND_LATENCY", "0")
    FitnessCriteria.objects.update(epsilon_start=0)
    return defaults


@pytest.fixture
def drive():
    """Drive trips in this process on a thread of their own: the test's thread runs
    Playwright's event loop, where the Fahrer's async driving cannot start another."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    def run(fn):
        def on_thread():
            try:
                return fn()
            finally:
                connection.close()

        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(on_thread).result()

    return run


class Person:
    """One person at one browser window."""

    def __init__(self, chromium, base: str, username: str, password: str) -> None:
        self.base, self.username, self.password = base, username, password
        self.context = chromium.new_context(viewport=LAPTOP)
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def go(self, path: str):
        return self.page.goto(self.base + path)

    def log_in(self) -> None:
        self.go("/login/")
        self.page.get_by_label("User name").fill(self.username)
        self.page.get_by_label("Password").fill(self.password)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url(self.base + "/")

    def shoot(self, name: str) -> None:
        """A full-page screenshot at laptop and at phone width, into screenshots/."""
        SCREENSHOTS.mkdir(exist_ok=True)
        for label, viewport in (("laptop", LAPTOP), ("phone", PHONE)):
            self.page.set_viewport_size(viewport)
            self.page.wait_for_timeout(150)
            self.page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
        self.page.set_viewport_size(LAPTOP)

    def snap(self, name: str) -> None:
        """One screenshot as the page is now, without resizing it."""
        SCREENSHOTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def person(live_site, transactional_db, chromium, password):
    people = []

    def open_window(user) -> Person:
        # The server checks passwords with the site's own hashers, not the tests' fast MD5.
        user.password = PBKDF2PasswordHasher().encode(password, "browsertests", iterations=1000)
        user.save(update_fields=["password"])
        window = Person(chromium, live_site, user.get_username(), password)
        people.append(window)
        return window

    yield open_window
    for window in people:
        window.close()
