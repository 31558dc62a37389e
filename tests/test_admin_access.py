"""The admin: every page opens for an admin and for nobody else; edits are validated."""

import hashlib
import re
from datetime import date
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils.html import escape

from clutch_site.models import ApiToken
from clutch_site.services import api_token_authenticate, api_token_create
from fahrtenbuch.models import (
    CircuitBreaker,
    Leg,
    RoutingPolicy,
    SpendDay,
    SpendEntry,
    TrainingRun,
    Trip,
    TripEvent,
)
from garage.models import Gear, Provider, Road

ADMIN_PAGES = [
    ("garage", "provider"),
    ("garage", "gear"),
    ("garage", "road"),
    ("garage", "budget"),
    ("garage", "fitnesscriteria"),
    ("fahrtenbuch", "trip"),
    ("fahrtenbuch", "leg"),
    ("fahrtenbuch", "tripevent"),
    ("fahrtenbuch", "spendentry"),
    ("fahrtenbuch", "spendday"),
    ("fahrtenbuch", "routingpolicy"),
    ("fahrtenbuch", "trainingrun"),
    ("fahrtenbuch", "circuitbreaker"),
    ("clutch_site", "apitoken"),
    ("auth", "user"),
    ("auth", "group"),
]
SENTINEL = "sk-ant-SENTINEL-123"


@pytest.fixture
def one_of_everything(defaults, admin_user, member) -> None:
    """At least one row in every table the admin shows, so change pages have an object."""
    gear = Gear.objects.get(name="pruefstand-g1")
    road = Road.objects.get(slug="feldweg")
    trip = Trip.objects.create(
        user=member,
        task="fix the typo in the README",
        road=road.slug,
        gear=gear,
        gear_name=gear.name,
        throttle=0.3,
        pattern="single",
        status="succeeded",
        output="Fixed.",
        simulated=True,
    )
    leg = Leg.objects.create(
        trip=trip, position=0, gear=gear, gear_name=gear.name, status="succeeded"
    )
    TripEvent.objects.create(trip=trip, kind="trip.started", data={"road": road.slug})
    SpendEntry.objects.create(
        trip=trip, leg=leg, gear=gear, local_day=date(2026, 3, 1), reserved_usd=Decimal("0.001")
    )
    SpendDay.objects.create(day=date(2026, 3, 1), committed_usd=Decimal("0.001"))
    run = TrainingRun.objects.create(
        triggered_by=admin_user, epsilon_before=0.1, epsilon_after=0.0995
    )
    RoutingPolicy.objects.create(
        road=road, gear=gear, throttle=0.3, pattern="single", training_run=run
    )
    CircuitBreaker.objects.create(gear=gear)
    api_token_create(user=member, name="script")
    Group.objects.create(name="drivers")


def _model(app_label: str, model_name: str):
    return next(
        m
        for m in admin.site._registry
        if (m._meta.app_label, m._meta.model_name) == (app_label, model_name)
    )


def _change_url(obj) -> str:
    meta = obj._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])


def test_every_registered_model_is_checked_here():
    registered = {(m._meta.app_label, m._meta.model_name) for m in admin.site._registry}

    assert registered == set(ADMIN_PAGES)


def test_admin_index_lists_the_apps(admin_client):
    response = admin_client.get("/admin/")

    assert response.status_code == 200
    for title in ("Garage", "Fahrtenbuch", "Gears", "Roads", "API tokens"):
        assert title in response.text


@pytest.mark.parametrize(("app_label", "model_name"), ADMIN_PAGES)
def test_admin_opens_changelist_and_change_page(
    admin_client, one_of_everything, app_label, model_name
):
    model = _model(app_label, model_name)
    obj = model._default_manager.order_by("pk").first()

    changelist = admin_client.get(reverse(f"admin:{app_label}_{model_name}_changelist"))
    change = admin_client.get(_change_url(obj))

    assert changelist.status_code == 200
    assert str(model._meta.verbose_name) in changelist.text
    assert change.status_code == 200
    assert escape(str(obj)) in change.text


@pytest.mark.parametrize("who", ["anonymous", "member"])
def test_only_staff_reach_the_admin(client, member_client, one_of_everything, who):
    visitor = member_client if who == "member" else client
    urls = ["/admin/"]
    for app_label, model_name in ADMIN_PAGES:
        urls.append(reverse(f"admin:{app_label}_{model_name}_changelist"))
        urls.append(_change_url(_model(app_label, model_name)._default_manager.first()))

    for url in urls:
        response = visitor.get(url)
        assert response.status_code == 302, url
        assert response.url.startswith("/admin/login/?next="), url
        assert response.content == b"", url


def test_member_cannot_log_in_to_the_admin(client, member, password):
    response = client.post(
        "/admin/login/?next=/admin/", {"username": member.username, "password": password}
    )

    assert response.status_code == 200
    assert "Please enter the correct username and password for a staff account" in response.text
    assert client.get("/admin/").status_code == 302


# --- providers: where the key is, never the key ------------------------------------------


def test_provider_changelist_says_which_variable_to_set(admin_client, defaults):
    response = admin_client.get(reverse("admin:garage_provider_changelist"))

    assert "missing: set ANTHROPIC_API_KEY" in response.text
    assert "missing: set GEMINI_API_KEY or GOOGLE_API_KEY" in response.text
    assert "present in" not in response.text


def test_provider_changelist_names_the_variable_holding_the_key_but_not_the_key(
    admin_client, defaults, monkeypatch
):
    monkeypatch.setenv("ANTHROPIC_API_KEY", SENTINEL)

    changelist = admin_client.get(reverse("admin:garage_provider_changelist"))
    change = admin_client.get(_change_url(Provider.objects.get(name="anthropic")))

    assert "present in ANTHROPIC_API_KEY" in changelist.text
    assert "missing: set ANTHROPIC_API_KEY" not in changelist.text
    assert "present in ANTHROPIC_API_KEY" in change.text
    for response in (changelist, change):
        assert SENTINEL not in response.text
        assert "SENTINEL" not in response.text


def test_provider_key_from_the_secrets_file_is_named_but_not_shown(
    admin_client, defaults, monkeypatch, tmp_path
):
    secrets = tmp_path / "secrets.env"
    secrets.write_text("export OPENAI_API_KEY='sk-FILE-SENTINEL-456'\n")
    monkeypatch.setenv("CLUTCH_SECRETS_FILE", str(secrets))

    response = admin_client.get(reverse("admin:garage_provider_changelist"))

    assert "present in OPENAI_API_KEY" in response.text
    assert "FILE-SENTINEL" not in response.text


# --- gear bulk edit ----------------------------------------------------------------------


def _bulk_edit(client, *rows: tuple[Gear, dict]):
    data = {
        "form-TOTAL_FORMS": str(len(rows)),
        "form-INITIAL_FORMS": str(len(rows)),
        "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000",
        "_save": "Save",
    }
    for i, (gear, changes) in enumerate(rows):
        values = {
            "id": gear.pk,
            "tier": gear.tier,
            "input_price": gear.input_price,
            "output_price": gear.output_price,
            "cached_input_price": gear.cached_input_price,
            "thinking_price": gear.thinking_price,
            "enabled": gear.enabled,
            **changes,
        }
        enabled = values.pop("enabled")
        data.update({f"form-{i}-{field}": str(value) for field, value in values.items()})
        if enabled:
            data[f"form-{i}-enabled"] = "on"
    return client.post(reverse("admin:garage_gear_changelist"), data)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"input_price": "-1.00"}, "Ensure this value is greater than or equal to 0."),
        ({"tier": "6"}, "Ensure this value is less than or equal to 5."),
        ({"enabled": False}, "is the default gear of feldweg, rallye"),
    ],
    ids=["negative-price", "tier-6", "disable-a-roads-default"],
)
def test_gear_bulk_edit_with_a_bad_value_changes_nothing(
    admin_client, defaults, db_snapshot, changes, message
):
    haiku = Gear.objects.get(name="claude-haiku")
    flash = Gear.objects.get(name="gemini-flash")
    before = db_snapshot()

    response = _bulk_edit(admin_client, (flash, {"output_price": "8.00"}), (haiku, changes))

    assert response.status_code == 200
    assert "Please correct the error" in response.text
    assert message in response.text
    assert db_snapshot() == before


def test_gear_bulk_edit_saves_valid_values(admin_client, defaults):
    flash = Gear.objects.get(name="gemini-flash")
    opus = Gear.objects.get(name="claude-opus")

    response = _bulk_edit(
        admin_client,
        (flash, {"output_price": "8.00", "tier": "3"}),
        (opus, {"thinking_price": "0"}),
    )

    assert response.status_code == 302
    flash.refresh_from_db()
    opus.refresh_from_db()
    assert (flash.output_price, flash.tier, opus.thinking_price) == (Decimal("8.00"), 3, 0)


# --- API tokens --------------------------------------------------------------------------


def test_admin_creates_an_api_token_and_sees_it_once(admin_client, member):
    response = admin_client.post(
        reverse("admin:clutch_site_apitoken_add"),
        {"user": member.pk, "name": "ci runner", "expires_at_0": "", "expires_at_1": ""},
        follow=True,
    )

    assert response.status_code == 200
    shown = re.findall(r"clutch_[A-Za-z0-9_-]{40,}", response.text)
    assert len(shown) == 1
    raw = shown[0]
    token = ApiToken.objects.get()
    assert (token.user, token.name) == (member, "ci runner")
    assert token.digest == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in str(ApiToken.objects.values().get())
    assert api_token_authenticate(raw=raw) == member
    for url in (reverse("admin:clutch_site_apitoken_changelist"), _change_url(token)):
        page = admin_client.get(url)
        assert page.status_code == 200
        assert raw not in page.text
        assert token.prefix in page.text
