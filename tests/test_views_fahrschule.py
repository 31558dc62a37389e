"""The Fahrschule page: fitness, policy, ε and training runs; only admins train."""

import pytest
from django.test import Client

from fahrtenbuch.models import TrainingRun
from garage.fahrer import Fahrer


@pytest.fixture
def car(defaults, monkeypatch):
    monkeypatch.setenv("CLUTCH_PRUEFSTAND_LATENCY", "0")
    return defaults


@pytest.fixture
def driven(car, member):
    fahrer = Fahrer(user=member, seed=3)
    for _ in range(3):
        fahrer.fahren("Fix the authentication bug in the login module")


def test_anonymous_is_sent_to_the_login_page(client, car):
    response = client.get("/fahrschule/")

    assert (response.status_code, response.url) == (302, "/login/?next=/fahrschule/")
    assert client.post("/fahrschule/train/").status_code == 302
    assert TrainingRun.objects.count() == 0


def test_members_see_fitness_policy_and_epsilon_but_no_train_button(member_client, driven):
    response = member_client.get("/fahrschule/")

    assert response.status_code == 200
    text = response.text
    assert 'id="fitness-chart"' in text and 'id="fitness-data"' in text
    assert "bundesstrasse" in text
    assert "Policy" in text and "Exploration ε over time" in text
    assert 'id="train-now"' not in text


def test_members_may_not_train(member_client, car):
    response = member_client.post("/fahrschule/train/")

    assert response.status_code == 403
    assert "Training is for admins only" in response.text
    assert TrainingRun.objects.count() == 0


def test_admin_trains_and_sees_the_run(admin_client, driven):
    assert 'id="train-now"' in admin_client.get("/fahrschule/").text

    response = admin_client.post("/fahrschule/train/", follow=True)

    run = TrainingRun.objects.get()
    assert response.status_code == 200
    assert f"Training run {run.pk}:" in response.text
    assert run.trips_considered == 3
    assert 'id="epsilon-chart"' in response.text


def test_htmx_train_returns_the_page_body_partial(admin_client, driven):
    response = admin_client.post("/fahrschule/train/", HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    assert response.text.lstrip().startswith('<div id="fahrschule-body">')
    assert "<html" not in response.text
    assert "Training run" in response.text


def test_htmx_get_returns_the_page_body_partial(member_client, car):
    response = member_client.get("/fahrschule/", HTTP_HX_REQUEST="true")

    assert response.text.lstrip().startswith('<div id="fahrschule-body">')


def test_training_needs_the_csrf_token(admin_user):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)

    assert browser.post("/fahrschule/train/").status_code == 403
    assert TrainingRun.objects.count() == 0


def test_the_page_shows_how_the_lernrouter_does(admin_client, defaults):
    from decimal import Decimal

    from fahrtenbuch.models import Trip
    from garage.models import Gear

    haiku, flash = Gear.objects.get(name="claude-haiku"), Gear.objects.get(name="gemini-flash")
    for i in range(22):
        for gear, status in ((haiku, "succeeded"), (flash, "failed")):
            Trip.objects.create(
                task=f"Format file {i}",
                road="feldweg",
                gear=gear,
                gear_name=gear.name,
                status=status,
                cost_usd=Decimal("0.001"),
                latency_ms=500,
            )
    page = admin_client.get("/fahrschule/").content.decode()
    assert "Not trained yet" in page
    admin_client.post("/fahrschule/train/")
    page = admin_client.get("/fahrschule/").content.decode()
    assert "Trained on 44 trips" in page and "gemini-flash" in page
