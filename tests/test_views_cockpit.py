"""The cockpit (home page): who may see it, what it shows, and its partial fragments."""

from decimal import Decimal

import pytest

from garage import tankuhr
from garage.fahrer import Fahrer


@pytest.fixture
def car(defaults, monkeypatch):
    monkeypatch.setenv("CLUTCH_PRUEFSTAND_LATENCY", "0")
    return defaults


def test_anonymous_is_sent_to_the_login_page(client, car):
    response = client.get("/")

    assert (response.status_code, response.url) == (302, "/login/?next=/")


def test_cockpit_shows_fuel_gauge_tacho_gearbox_and_running_trips(member_client, car):
    response = member_client.get("/")

    assert response.status_code == 200
    text = response.text
    for element in ('id="fuel-gauge"', 'id="tacho"', 'id="gearbox"', 'id="running-trips"'):
        assert element in text
    assert '<svg class="gauge"' in text and "arc-green" in text and "arc-red" in text
    assert 'ws-connect="/ws/cockpit/"' in text
    assert "Latency p95" in text


def test_gauge_moves_to_the_zone_of_the_spend(member_client, car):
    entry = tankuhr.reserve(amount=Decimal("20"))  # 40 % of the 50 USD day: yellow
    tankuhr.settle(entry, actual=Decimal("20"))

    response = member_client.get("/")

    assert 'data-zone="yellow"' in response.text
    assert "$20.00</span> of $50.00" in response.text


def test_gearbox_says_why_a_gear_cannot_drive_and_how_to_fix_it(member_client, car):
    text = member_client.get("/").text

    assert "no key: set ANTHROPIC_API_KEY" in text
    assert "not reachable at http://localhost:11434" in text  # Ollama not checked yet
    assert 'class="sim">simulated</span>' in text


def test_simulated_banner_shows_while_the_pruefstand_stands_in(member_client, car, monkeypatch):
    assert 'id="simulated-banner"' in member_client.get("/").text

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    assert 'id="simulated-banner"' not in member_client.get("/").text


def test_members_see_only_their_own_running_trips(member_client, member, outsider, car):
    mine, _ = Fahrer(user=member, seed=1).submit("Fix the login bug in mine")
    theirs, _ = Fahrer(user=outsider, seed=1).submit("Fix the secret bug of theirs")

    text = member_client.get("/").text

    assert f"/trips/{mine.pk}/" in text
    assert f"/trips/{theirs.pk}/" not in text and "secret bug" not in text


def test_admins_see_everyones_running_trips_and_the_admin_link(admin_client, member, car):
    trip, _ = Fahrer(user=member, seed=1).submit("Fix the login bug")

    text = admin_client.get("/").text

    assert f"/trips/{trip.pk}/" in text
    assert 'href="/admin/"' in text


def test_members_get_no_admin_link(member_client, car):
    assert 'href="/admin/"' not in member_client.get("/").text


def test_task_text_is_escaped_in_the_running_list(member_client, member, car):
    Fahrer(user=member, seed=1).submit("Fix <script>alert(1)</script> in the login")

    text = member_client.get("/").text

    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;" in text


def test_the_live_address_answers_plain_http_with_426(member_client, car):
    assert member_client.get("/ws/cockpit/").status_code == 426
