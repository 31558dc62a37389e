"""What a person sees in Chromium: a trip streaming in live, the cockpit moving with the
budget, a trip that is not theirs, and an admin training the Fahrschule."""

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from fahrtenbuch.models import Trip
from garage import tankuhr
from garage.fahrer import Fahrer

pytestmark = pytest.mark.browser

BUG = "Fix the authentication bug in the login module"


def test_member_submits_a_task_and_watches_it_arrive_live(person, member, car):
    mia = person(member)
    mia.log_in()
    expect(mia.page.locator(".cockpit[data-live-state='live']")).to_be_visible()
    mia.shoot("cockpit-member")

    mia.page.get_by_role("link", name="New trip").first.click()
    mia.page.get_by_role("textbox", name="Task").fill(BUG)
    preview = mia.page.locator("#route-preview")
    expect(preview).to_contain_text("bundesstrasse")
    expect(preview).to_contain_text("claude-sonnet")
    expect(preview).to_contain_text("Est. cost")
    mia.shoot("new-trip")

    mia.page.get_by_role("button", name="Drive").click()
    mia.page.wait_for_url(re.compile(r"/trips/\d+/$"))
    trip = Trip.objects.get(task=BUG)
    # A marker on the window survives only if the page is never reloaded.
    mia.page.evaluate("window.__noReload = true")
    status = mia.page.locator(f"#trip-status-{trip.pk} .status")
    stream = mia.page.locator(f"#stream-{trip.pk}-1")
    expect(stream).to_contain_text("Simulated answer")
    assert status.get_attribute("data-status") in ("queued", "running")
    mia.snap("trip-streaming-laptop")

    expect(status).to_have_attribute("data-status", "succeeded", timeout=30_000)
    expect(mia.page.locator(f"#trip-output-{trip.pk} .output-text")).to_contain_text(
        "Simulated answer"
    )
    assert mia.page.evaluate("window.__noReload") is True
    expect(mia.page.locator(f"#trip-legs-{trip.pk}")).to_contain_text("succeeded")
    mia.shoot("trip-succeeded")

    mia.page.get_by_role("button", name="Thumbs up").click()
    expect(mia.page.locator("#flash")).to_contain_text("thumbs up recorded")
    expect(mia.page.get_by_role("button", name="Thumbs up")).to_have_attribute(
        "aria-pressed", "true"
    )

    mia.page.get_by_role("link", name="History").first.click()
    row = mia.page.locator("table.history tbody tr").filter(has_text=BUG)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("succeeded")
    mia.page.get_by_label("Search the task").fill("typo")
    expect(mia.page.locator("#trip-table")).to_contain_text("No trip matches these filters")
    mia.page.wait_for_url(re.compile(r"q=typo"))  # hx-push-url keeps the filter in the address
    mia.page.get_by_label("Search the task").fill("authentication")
    expect(mia.page.locator("table.history tbody tr")).to_have_count(1)
    mia.page.wait_for_url(re.compile(r"q=authentication"))
    mia.shoot("history")
    assert not mia.errors, mia.errors


def test_a_zone_change_shows_on_the_cockpit_live(person, member, car):
    mia = person(member)
    mia.log_in()
    expect(mia.page.locator(".cockpit[data-live-state='live']")).to_be_visible()
    expect(mia.page.locator("#fuel-gauge .zone-badge")).to_have_attribute("data-zone", "green")
    mia.page.evaluate("window.__noReload = true")

    tankuhr.settle(tankuhr.reserve(amount=Decimal("35")), actual=Decimal("35"))  # 70 %: orange

    expect(mia.page.locator("#fuel-gauge .zone-badge")).to_have_attribute(
        "data-zone", "orange", timeout=3_000
    )
    expect(mia.page.locator("#fuel-gauge")).to_contain_text("$35.00")
    assert mia.page.evaluate("window.__noReload") is True
    mia.shoot("cockpit-orange")


def test_a_member_cannot_open_another_members_trip(person, member, outsider, car):
    trip, _ = Fahrer(user=outsider, seed=1).submit("Fix the secret payroll bug")
    mia = person(member)
    mia.log_in()

    response = mia.go(f"/trips/{trip.pk}/")

    assert response.status == 403
    expect(mia.page.get_by_role("heading", level=1)).to_have_text("This is not yours to see")
    expect(mia.page.locator("main")).not_to_contain_text("payroll")
    mia.shoot("trip-forbidden")
    mia.go("/trips/")
    expect(mia.page.locator("main")).not_to_contain_text("payroll")


def test_an_admin_trains_the_fahrschule_from_its_page(person, admin_user, member, car, drive):
    fahrer = Fahrer(user=member, seed=2)
    for task in (BUG, "Fix the typo in the README", "Review this pull request for quality"):
        assert drive(lambda task=task: fahrer.fahren(task)).status == "succeeded"
    root = person(admin_user)
    root.log_in()
    expect(root.page.get_by_role("link", name="Admin", exact=True)).to_be_visible()
    root.shoot("cockpit-admin")

    root.page.get_by_role("link", name="Fahrschule").click()
    expect(root.page.locator("#fitness-chart")).to_be_visible()
    root.page.get_by_role("button", name="Train now").click()

    expect(root.page.locator("#fahrschule-body .alert-ok")).to_contain_text("Training run")
    expect(root.page.locator("#fahrschule-body")).to_contain_text("3 trips considered")
    expect(root.page.locator("#epsilon-chart")).to_be_visible()
    assert root.page.evaluate("document.querySelector('#epsilon-chart').dataset.drawn") == "1"
    root.shoot("fahrschule")
    assert not root.errors, root.errors


def test_screenshots_of_the_login_page_and_a_swarm(person, member, car, drive):
    items = [f"module_{i}.py" for i in range(6)]
    result = drive(
        lambda: Fahrer(user=member, seed=1).fahren("Format each file", pattern="swarm", items=items)
    )
    trip = Trip.objects.get(pk=result.trip_id)
    mia = person(member)
    mia.go("/login/")
    mia.shoot("login")
    mia.log_in()
    mia.go(f"/trips/{trip.pk}/")
    expect(mia.page.locator("progress")).to_have_attribute("value", "6")
    mia.shoot("trip-swarm")
