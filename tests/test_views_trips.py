"""New trip, route preview and the trip page with its actions: permissions, partials, errors."""

import pytest
from django.test import Client

from fahrtenbuch.models import Trip, TripEvent
from garage.fahrer import Fahrer
from garage.models import FitnessCriteria

BUG = "Fix the authentication bug in the login module"


@pytest.fixture
def car(defaults, monkeypatch):
    monkeypatch.setenv("CLUTCH_PRUEFSTAND_LATENCY", "0")
    FitnessCriteria.objects.update(epsilon_start=0)
    return defaults


def driven(user, task=BUG, **options) -> Trip:
    result = Fahrer(user=user, seed=1).fahren(task, **options)
    return Trip.objects.get(pk=result.trip_id)


def queued(user, task=BUG, **options) -> Trip:
    trip, _ = Fahrer(user=user, seed=1).submit(task, **options)
    return trip


# --- new trip and preview ---------------------------------------------------------------


def test_new_trip_needs_login(client, car):
    assert client.get("/trips/new/").status_code == 302
    assert client.post("/trips/new/", {"task": BUG}).status_code == 302
    assert client.post("/trips/preview/", {"task": BUG}).status_code == 302
    assert Trip.objects.count() == 0


def test_new_trip_form_previews_while_typing(member_client, car):
    response = member_client.get("/trips/new/")

    assert response.status_code == 200
    assert 'hx-post="/trips/preview/"' in response.text
    assert 'hx-trigger="input changed delay:300ms' in response.text
    for name in ("gear", "throttle", "pattern", "tempo", "list"):
        assert f'name="{name}"' in response.text


def test_preview_is_a_partial_with_road_gear_throttle_pattern_cost_zone_and_reasons(
    member_client, car
):
    response = member_client.post("/trips/preview/", {"task": BUG}, HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    text = response.text
    assert "<html" not in text
    for fact in ("bundesstrasse", "claude-sonnet", "0.70", "single", "green", "$0.0"):
        assert fact in text
    assert "Road bundesstrasse: default gear claude-sonnet" in text
    assert Trip.objects.count() == 0  # a preview records nothing


def test_preview_takes_the_options(member_client, car):
    response = member_client.post(
        "/trips/preview/",
        {
            "task": "Format these files",
            "pattern": "swarm",
            "list": "a.py\nb.py\nc.py",
            "throttle": "0.2",
        },
    )

    assert "swarm" in response.text and "(3 legs)" in response.text
    assert "0.20" in response.text


def test_preview_of_an_empty_task_asks_for_one(member_client, car):
    response = member_client.post("/trips/preview/", {"task": "  "})

    assert "Start typing a task" in response.text


def test_preview_with_a_bad_option_says_what_to_fix(member_client, car):
    response = member_client.post("/trips/preview/", {"task": BUG, "throttle": "7"})

    assert response.status_code == 200
    assert "throttle must be from 0 to 1" in response.text


def test_submit_records_the_trip_and_goes_to_its_page(member_client, member, car):
    response = member_client.post("/trips/new/", {"task": BUG, "tempo": "urgent"})

    trip = Trip.objects.get()
    assert (response.status_code, response.url) == (302, f"/trips/{trip.pk}/")
    assert trip.user == member and trip.tempo == "urgent" and trip.status == "queued"


def test_submit_maps_the_list_to_the_chosen_pattern(member_client, car):
    member_client.post(
        "/trips/new/", {"task": "Process the data", "pattern": "convoy", "list": "Parse\nCheck\n"}
    )

    assert Trip.objects.get().options == {"pattern": "convoy", "steps": ["Parse", "Check"]}


def test_submit_of_an_empty_task_shows_the_form_again_with_the_reason(member_client, car):
    response = member_client.post("/trips/new/", {"task": ""})

    assert response.status_code == 422
    assert "The task is empty" in response.text
    assert Trip.objects.count() == 0


def test_submit_needs_the_csrf_token(member, car):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(member)

    assert browser.post("/trips/new/", {"task": BUG}).status_code == 403
    assert Trip.objects.count() == 0


def test_new_trip_from_an_earlier_one_prefills_the_task(member_client, member, car):
    trip = queued(member)

    assert BUG in member_client.get(f"/trips/new/?from={trip.pk}").text


def test_new_trip_from_someone_elses_trip_prefills_nothing(outsider_client, member, car):
    trip = queued(member, "Fix the secret bug")

    assert "secret" not in outsider_client.get(f"/trips/new/?from={trip.pk}").text


# --- the trip page --------------------------------------------------------------------------


def test_trip_page_needs_login(client, member, car):
    trip = queued(member)

    response = client.get(f"/trips/{trip.pk}/")

    assert (response.status_code, response.url) == (302, f"/login/?next=/trips/{trip.pk}/")


def test_owner_sees_status_decision_reasons_output_legs_and_figures(member_client, member, car):
    trip = driven(member)

    response = member_client.get(f"/trips/{trip.pk}/")

    assert response.status_code == 200
    text = response.text
    assert 'data-status="succeeded"' in text
    assert "claude-sonnet" in text and "Road bundesstrasse" in text
    assert "Simulated answer" in text
    assert f'id="trip-legs-{trip.pk}"' in text and "single" in text
    assert f'ws-connect="/ws/trips/{trip.pk}/"' in text
    last = TripEvent.objects.filter(trip=trip).order_by("-id").first()
    assert f'data-after="{last.pk}"' in text
    assert "Thumbs up" in text


def test_another_member_gets_403_not_the_trip(outsider_client, member, car):
    trip = driven(member, "Fix the secret payroll bug")

    response = outsider_client.get(f"/trips/{trip.pk}/")

    assert response.status_code == 403
    assert "belongs to someone else" in response.text
    assert "payroll" not in response.text


def test_a_missing_trip_is_404(member_client, car):
    response = member_client.get("/trips/999999/")

    assert response.status_code == 404
    assert "does not exist" in response.text


def test_admin_sees_anyones_trip(admin_client, member, car):
    trip = driven(member)

    assert admin_client.get(f"/trips/{trip.pk}/").status_code == 200


def test_htmx_get_returns_the_live_partial(member_client, member, car):
    trip = driven(member)

    response = member_client.get(f"/trips/{trip.pk}/", HTTP_HX_REQUEST="true")

    assert "<html" not in response.text
    assert f'id="trip-status-{trip.pk}"' in response.text
    assert f'id="trip-actions-{trip.pk}"' in response.text


def test_output_is_escaped_never_trusted(member_client, member, car):
    trip = driven(member)
    Trip.objects.filter(pk=trip.pk).update(output="<img src=x onerror=alert(1)>")

    text = member_client.get(f"/trips/{trip.pk}/").text

    assert "<img src=x" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text


def test_a_running_trip_shows_what_streamed_so_far(member_client, member, car):
    trip = queued(member)
    Trip.objects.filter(pk=trip.pk).update(status="running")
    TripEvent.objects.create(trip=trip, kind="output", data={"chunks": {"1": "Hello <b>"}})
    TripEvent.objects.create(trip=trip, kind="output", data={"chunks": {"1": "world"}})

    text = member_client.get(f"/trips/{trip.pk}/").text

    assert f'id="stream-{trip.pk}-1"' in text
    assert "Hello &lt;b&gt;world" in text
    assert "Cancel trip" in text


def test_a_refused_trip_shows_the_reason(member_client, member, car):
    from decimal import Decimal

    from garage import tankuhr

    tankuhr.settle(tankuhr.reserve(amount=Decimal("45")), actual=Decimal("45"))
    trip = queued(member, "Design the architecture of the new billing system", gear="claude-opus")

    text = member_client.get(f"/trips/{trip.pk}/").text

    assert trip.status == "refused"
    assert "Refused:" in text


def test_swarm_legs_show_a_progress_bar(member_client, member, car):
    trip = driven(member, "Format each file", pattern="swarm", items=["a.py", "b.py", "c.py"])

    text = member_client.get(f"/trips/{trip.pk}/").text

    assert "<progress" in text and "3 of 3 done" in text


# --- actions -----------------------------------------------------------------------------


def test_owner_cancels_a_queued_trip(member_client, member, car):
    trip = queued(member)

    response = member_client.post(f"/trips/{trip.pk}/cancel/")

    assert (response.status_code, response.url) == (302, f"/trips/{trip.pk}/")
    trip.refresh_from_db()
    assert trip.status == "cancelled"


def test_htmx_cancel_answers_with_out_of_band_fragments(member_client, member, car):
    trip = queued(member)

    response = member_client.post(f"/trips/{trip.pk}/cancel/", HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    assert "<html" not in response.text
    assert f'id="trip-status-{trip.pk}" class="trip-status" role="status" hx-swap-oob="true"' in (
        response.text
    )
    assert 'data-status="cancelled"' in response.text


def test_cancelling_a_finished_trip_is_a_clear_message_not_a_500(member_client, member, car):
    trip = driven(member)

    response = member_client.post(f"/trips/{trip.pk}/cancel/", follow=True)

    assert response.status_code == 200
    assert "already succeeded; nothing to cancel" in response.text


def test_htmx_business_error_goes_to_the_flash_area(member_client, member, car):
    trip = driven(member)

    response = member_client.post(f"/trips/{trip.pk}/cancel/", HTTP_HX_REQUEST="true")

    assert response.status_code == 409
    assert response["HX-Retarget"] == "#flash"
    assert "nothing to cancel" in response.text


def test_another_member_cannot_cancel(outsider_client, member, car):
    trip = queued(member)

    response = outsider_client.post(f"/trips/{trip.pk}/cancel/")

    assert response.status_code == 403
    trip.refresh_from_db()
    assert trip.status == "queued"


def test_cancel_by_get_is_not_allowed(member_client, member, car):
    trip = queued(member)

    assert member_client.get(f"/trips/{trip.pk}/cancel/").status_code == 405


def test_feedback_thumbs_down_with_a_correction(member_client, member, car):
    trip = driven(member)

    response = member_client.post(
        f"/trips/{trip.pk}/feedback/", {"thumbs": "-1", "note": "It missed the token refresh."}
    )

    assert response.status_code == 302
    trip.refresh_from_db()
    assert (trip.feedback, trip.feedback_note) == (-1, "It missed the token refresh.")
    assert TripEvent.objects.filter(trip=trip, kind="feedback").exists()


def test_htmx_feedback_marks_the_chosen_thumb(member_client, member, car):
    trip = driven(member)

    response = member_client.post(
        f"/trips/{trip.pk}/feedback/", {"thumbs": "1"}, HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 200
    assert 'aria-pressed="true"' in response.text
    assert "thumbs up recorded" in response.text


def test_feedback_without_a_choice_is_a_clear_message(member_client, member, car):
    trip = driven(member)

    response = member_client.post(f"/trips/{trip.pk}/feedback/", {"note": "hm"}, follow=True)

    assert "Choose thumbs up or thumbs down" in response.text


def test_another_member_cannot_give_feedback(outsider_client, member, car):
    trip = driven(member)

    assert outsider_client.post(f"/trips/{trip.pk}/feedback/", {"thumbs": "1"}).status_code == 403
    trip.refresh_from_db()
    assert trip.feedback is None


def test_feedback_needs_the_csrf_token(member, car):
    trip = driven(member)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(member)

    assert browser.post(f"/trips/{trip.pk}/feedback/", {"thumbs": "1"}).status_code == 403


def test_run_again_submits_the_same_task_and_options(member_client, member, car):
    trip = driven(member, "Format each file", pattern="swarm", items=["a.py", "b.py"])

    response = member_client.post(f"/trips/{trip.pk}/again/")

    again = Trip.objects.exclude(pk=trip.pk).get()
    assert (response.status_code, response.url) == (302, f"/trips/{again.pk}/")
    assert (again.task, again.options, again.user) == (trip.task, trip.options, member)


def test_htmx_run_again_redirects_the_browser(member_client, member, car):
    trip = driven(member)

    response = member_client.post(f"/trips/{trip.pk}/again/", HTTP_HX_REQUEST="true")

    again = Trip.objects.exclude(pk=trip.pk).get()
    assert response["HX-Redirect"] == f"/trips/{again.pk}/"


def test_another_member_cannot_run_it_again(outsider_client, member, car):
    trip = driven(member)

    assert outsider_client.post(f"/trips/{trip.pk}/again/").status_code == 403
    assert Trip.objects.count() == 1


def test_admin_runs_a_members_trip_again_as_their_own(admin_client, admin_user, member, car):
    trip = driven(member)

    admin_client.post(f"/trips/{trip.pk}/again/")

    assert Trip.objects.exclude(pk=trip.pk).get().user == admin_user


def test_admins_get_a_link_to_the_trip_in_the_admin(admin_client, member_client, member, car):
    trip = driven(member)

    assert (
        f"/admin/fahrtenbuch/trip/{trip.pk}/change/" in admin_client.get(f"/trips/{trip.pk}/").text
    )
    assert "/admin/" not in member_client.get(f"/trips/{trip.pk}/").text
