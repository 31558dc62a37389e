"""The site around the admin: login, logout, the home page, and how the database is set up."""

import os
import re
import stat

import pytest
from django.db import connection
from django.test import Client

import clutch_site.settings as settings_module
from garage.models import Gear, Road

AVAILABLE = '<span class="ok">available</span>'
SIMULATED = '<span class="sim">simulated</span>'


def _csrf_token(page) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert match, "no CSRF token in the form"
    return match.group(1)


def _log_in(client: Client, username: str, password: str, next_url: str = ""):
    page = client.get("/login/" + (f"?next={next_url}" if next_url else ""))
    data = {"username": username, "password": password, "csrfmiddlewaretoken": _csrf_token(page)}
    if next_url:
        data["next"] = next_url
    return client.post("/login/", data)


@pytest.fixture
def browser() -> Client:
    """A client that, like a browser, has to send the CSRF token it was given."""
    return Client(enforce_csrf_checks=True)


def test_login_page_renders_a_form_with_a_csrf_token(browser, db):
    response = browser.get("/login/")

    assert response.status_code == 200
    assert "Log in to clutch" in response.text
    assert _csrf_token(response)
    assert "csrftoken" in response.cookies


def test_login_with_the_right_password_goes_home(browser, member, password):
    response = _log_in(browser, "mia", password)

    assert response.status_code == 302
    assert response.url == "/"
    assert browser.get("/").status_code == 200


def test_login_returns_to_the_page_asked_for(browser, admin_user, password):
    response = _log_in(browser, "root", password, next_url="/admin/")

    assert (response.status_code, response.url) == (302, "/admin/")


def test_login_with_the_wrong_password_shows_an_error(browser, member):
    response = _log_in(browser, "mia", "not the password")

    assert response.status_code == 200
    assert 'role="alert"' in response.text
    assert "Please enter a correct username and password" in response.text
    assert browser.get("/").status_code == 302


def test_login_without_the_csrf_token_is_refused(browser, member, password):
    browser.get("/login/")

    response = browser.post("/login/", {"username": "mia", "password": password})

    assert response.status_code == 403
    assert browser.get("/").status_code == 302


def test_home_requires_login(client, db):
    response = client.get("/")

    assert response.status_code == 302
    assert response.url == "/login/?next=/"


def test_logged_in_user_visiting_login_goes_home(member_client):
    response = member_client.get("/login/")

    assert (response.status_code, response.url) == (302, "/")


def test_logout_by_post(browser, member, password):
    _log_in(browser, "mia", password)
    home = browser.get("/")

    response = browser.post("/logout/", {"csrfmiddlewaretoken": _csrf_token(home)})

    assert response.status_code == 302
    assert response.url == "/login/"
    assert browser.get("/").status_code == 302


def test_logout_by_get_is_not_allowed(member_client):
    assert member_client.get("/logout/").status_code == 405
    assert member_client.get("/").status_code == 200


def test_home_lists_gears_and_roads(member_client, defaults):
    response = member_client.get("/")

    assert response.status_code == 200
    for gear in Gear.objects.all():
        assert gear.label in response.text
        assert gear.model_id in response.text
    for road in Road.objects.all():
        assert road.label in response.text


def test_home_says_how_to_configure_a_provider_without_a_key(member_client, defaults):
    response = member_client.get("/")

    assert "no key: set ANTHROPIC_API_KEY" in response.text
    assert "no key: set GEMINI_API_KEY or GOOGLE_API_KEY" in response.text
    # Without any key the Prüfstand stands in for the cloud gears: simulated, not available.
    cloud = Gear.objects.filter(provider__kind__in=["anthropic", "gemini", "openai"]).count()
    assert response.text.count(SIMULATED) >= cloud


def test_home_shows_a_gear_available_once_its_key_is_set(member_client, defaults, monkeypatch):
    before = member_client.get("/").text.count(AVAILABLE)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-SENTINEL-123")

    response = member_client.get("/")

    assert "no key: set ANTHROPIC_API_KEY" not in response.text
    assert "no key: set GEMINI_API_KEY or GOOGLE_API_KEY" in response.text
    assert "SENTINEL" not in response.text
    anthropic = Gear.objects.filter(provider__name="anthropic").count()
    assert response.text.count(AVAILABLE) == before + anthropic


def test_home_without_defaults_says_how_to_import_them(member_client):
    response = member_client.get("/")

    assert "No gears yet" in response.text
    assert "clutch_setup" in response.text


# --- database and secret key -------------------------------------------------------------

sqlite_only = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="SQLite settings; PostgreSQL is configured by its URL"
)


@sqlite_only
def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(db):
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        journal_mode = cursor.fetchone()[0]
        cursor.execute("PRAGMA busy_timeout")
        busy_timeout_ms = cursor.fetchone()[0]

    assert journal_mode == "wal"
    assert busy_timeout_ms >= 5000


@sqlite_only
def test_sqlite_transactions_take_the_write_lock_immediately(settings, db):
    assert settings.DATABASES["default"]["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert connection.transaction_mode == "IMMEDIATE"


def test_generated_secret_key_file_is_private(monkeypatch, tmp_path):
    monkeypatch.delenv("CLUTCH_SECRET_KEY", raising=False)
    monkeypatch.setattr(settings_module, "DATA_DIR", tmp_path)
    old_umask = os.umask(0)  # the file must be private whatever the umask
    try:
        key = settings_module.read_or_create_secret_key()
    finally:
        os.umask(old_umask)

    path = tmp_path / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == key
    assert len(key) >= 50
    assert settings_module.read_or_create_secret_key() == key


def test_the_sites_secret_key_file_in_data_dir_is_private(settings):
    if os.environ.get("CLUTCH_SECRET_KEY"):
        pytest.skip("CLUTCH_SECRET_KEY is set, so no key file is used")
    path = settings.DATA_DIR / "secret_key"

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == settings.SECRET_KEY
