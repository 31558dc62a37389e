"""All five patterns, the lifecycle, cancel and recovery — through the real queue: a Huey
consumer in its own process, as `make run` starts it."""

import itertools
import os
import signal
import time

import pytest

from fahrtenbuch.models import Trip, TripEvent
from fahrtenbuch.services import trip_cancel, trip_submit
from garage.models import FitnessCriteria


@pytest.fixture
def car(defaults, monkeypatch):
    monkeypatch.setenv("CLUTCH_PRUEFSTAND_LATENCY", "0")
    monkeypatch.delenv("CLUTCH_PRUEFSTAND", raising=False)
    FitnessCriteria.objects.update(epsilon_start=0)
    return defaults


def wait_for(
    trip_id: int,
    statuses=("succeeded", "failed", "cancelled", "refused"),
    timeout=30,
    consumer=None,
) -> Trip:
    deadline = time.monotonic() + timeout
    while True:
        trip = Trip.objects.get(pk=trip_id)
        if trip.status in statuses:
            return trip
        if time.monotonic() > deadline:
            log = consumer.log.read_text()[-3000:] if consumer else ""
            raise AssertionError(f"trip {trip_id} still {trip.status}\n{log}")
        time.sleep(0.05)


def submit(user, task, **options) -> Trip:
    trip, created = trip_submit(user=user, task=task, options=options)
    assert created
    return trip


def statuses(trip: Trip) -> list[str]:
    return [
        e.data["status"] for e in TripEvent.objects.filter(trip=trip, kind="status").order_by("id")
    ]


@pytest.mark.scaleout
def test_single_trip_lifecycle_queued_running_succeeded(member, car, huey_consumer):
    trip = submit(member, "Fix the authentication bug in the login module")
    trip = wait_for(trip.pk, consumer=huey_consumer)
    assert trip.status == "succeeded" and trip.output
    assert statuses(trip) == ["queued", "running", "succeeded"]
    leg = trip.legs.get()
    assert leg.role == "single" and leg.input_tokens > 0 and leg.cost_usd > 0 and leg.attempts


def test_convoy_feeds_each_output_into_the_next_step(member, car, huey_consumer):
    steps = ["Parse the CSV", "Validate the rows", "Write the report"]
    trip = wait_for(
        submit(member, "Process the sales data", pattern="convoy", steps=steps).pk,
        consumer=huey_consumer,
    )
    assert trip.status == "succeeded"
    legs = list(trip.legs.order_by("position"))
    assert [leg.title for leg in legs] == steps and {leg.role for leg in legs} == {"step"}
    for before, after in itertools.pairwise(legs):
        assert before.output in after.prompt
    assert trip.output == legs[-1].output


def test_convoy_stops_at_the_first_failure(member, car, huey_consumer):
    trip = submit(
        member,
        "Process the data",
        pattern="convoy",
        steps=["one", "two", "three"],
        pruefstand={"fail_first": 1, "error_kinds": ["invalid_request"], "latency_scale": 0},
    )
    trip = wait_for(trip.pk, consumer=huey_consumer)
    assert trip.status == "failed" and trip.legs.count() == 1


def test_team_runs_members_in_parallel_then_merges(member, car, huey_consumer):
    members = ["backend", "frontend", "docs"]
    trip = wait_for(
        submit(member, "Add CSV export", pattern="team", members=members).pk, consumer=huey_consumer
    )
    assert trip.status == "succeeded"
    legs = list(trip.legs.order_by("position"))
    assert [leg.role for leg in legs] == ["member"] * 3 + ["merge"]
    assert {leg.phase for leg in legs[:3]} == {0} and legs[3].phase == 1
    for leg in legs[:3]:
        assert leg.output in legs[3].prompt
    assert trip.output == legs[3].output


def test_swarm_drives_items_concurrently_reports_progress_and_partial_failures(
    member, car, huey_consumer
):
    items = [f"file_{i}.py" for i in range(12)]
    trip = submit(
        member,
        "Format these files with black",
        pattern="swarm",
        items=items,
        concurrency=4,
        pruefstand={"fail_first": 2, "error_kinds": ["invalid_request"], "latency_scale": 0},
    )
    trip = wait_for(trip.pk, consumer=huey_consumer)
    assert trip.status == "succeeded"
    legs = list(trip.legs.all())
    assert len(legs) == 12 and {leg.role for leg in legs} == {"item"}
    assert sum(leg.status == "failed" for leg in legs) == 2
    assert trip.output.count("(failed)") == 2 and all(f"## {i}" in trip.output for i in items)
    progress = [e.data for e in TripEvent.objects.filter(trip=trip, kind="progress")]
    assert progress[-1] == {"phase": 0, "done": 12, "total": 12}


def test_swarm_per_item_timeout_really_fires(member, car, huey_consumer):
    trip = submit(
        member,
        "Format these files",
        pattern="swarm",
        items=["a.py", "b.py", "c.py"],
        item_timeout_s=0.3,
        pruefstand={"slow_first_byte_ms": 5000, "latency_scale": 0},
    )
    started = time.monotonic()
    trip = wait_for(trip.pk, consumer=huey_consumer)
    assert time.monotonic() - started < 4
    assert trip.status == "failed"
    assert {leg.error_kind for leg in trip.legs.all()} == {"timeout"}
    assert all("timed out after 0.3 s" in leg.error for leg in trip.legs.all())


def test_hybrid_runs_a_team_phase_then_a_finishing_step(member, car, huey_consumer):
    trip = wait_for(
        submit(
            member,
            "Build the billing service",
            pattern="hybrid",
            members=["design", "implementation"],
        ).pk,
        consumer=huey_consumer,
    )
    assert trip.status == "succeeded"
    assert [(leg.phase, leg.role) for leg in trip.legs.order_by("position")] == [
        (0, "member"),
        (0, "member"),
        (1, "merge"),
        (2, "step"),
    ]


def test_stages_come_from_the_task_list_items(member, car, huey_consumer):
    task = "Format the following files:\n- api.py\n- models.py\n- views.py\n- urls.py"
    trip = wait_for(submit(member, task).pk, consumer=huey_consumer)
    assert trip.pattern == "swarm" and trip.legs.count() == 4


def test_cancelling_a_running_trip_stops_its_calls(member, car, huey_consumer):
    trip = submit(
        member, "Fix the login bug", pruefstand={"slow_first_byte_ms": 20000, "latency_scale": 0}
    )
    wait_for(trip.pk, statuses=("running",), consumer=huey_consumer)
    trip_cancel(Trip.objects.get(pk=trip.pk), by="test")
    time.sleep(1.5)
    trip = Trip.objects.get(pk=trip.pk)
    assert trip.status == "cancelled"
    leg = trip.legs.get()
    assert leg.attempts and leg.attempts[-1]["outcome"] == "cancelled"


def test_a_killed_worker_leaves_no_trip_stuck_running(member, car, start_consumer):
    first = start_consumer()
    trip = submit(
        member, "Fix the login bug", pruefstand={"slow_first_byte_ms": 2500, "latency_scale": 0}
    )
    wait_for(trip.pk, statuses=("running",), consumer=first)
    deadline = time.monotonic() + 10
    while not trip.legs.exists():  # in the middle of its call
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(1.2)
    # Its own heartbeat must come more often than "stale" (1 s here, 30 s by default), or its
    # periodic recovery would take the resumed trip for orphaned again.
    second = start_consumer(CLUTCH_STALE_AFTER_S="1", CLUTCH_HEARTBEAT_S="0.2")
    trip = wait_for(trip.pk, consumer=second)
    assert trip.status == "succeeded" and trip.resumed == 1
    assert any(
        "resumed" in e.data.get("error", "")
        for e in TripEvent.objects.filter(trip=trip, kind="status")
    )
    # It drove again: a second leg exists. (How recovery marks the legs it finds is checked
    # exactly in test_recovery_claims_each_orphan_once_and_fails_it_the_second_time.)
    assert trip.legs.count() >= 2 and trip.output


def test_recovery_claims_each_orphan_once_and_fails_it_the_second_time(
    member, car, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    from fahrtenbuch.services import trips_recover

    trip = submit(member, "Fix the login bug")
    old = timezone.now() - timedelta(minutes=5)
    Trip.objects.filter(pk=trip.pk).update(status="running", heartbeat_at=old)
    trip.legs.create(position=1, status="pending", gear_name="claude-sonnet")
    enqueued: list[int] = []
    with django_capture_on_commit_callbacks(execute=True):
        first = trips_recover(enqueue=enqueued.append)
        second = trips_recover(enqueue=enqueued.append)
    assert first["resumed"] == [trip.pk] and second["resumed"] == [] and enqueued == [trip.pk]
    trip.refresh_from_db()
    assert trip.status == "queued" and trip.resumed == 1
    assert trip.legs.get().error_kind == "worker_lost"
    Trip.objects.filter(pk=trip.pk).update(status="running", heartbeat_at=old)
    with django_capture_on_commit_callbacks(execute=True):
        third = trips_recover(enqueue=enqueued.append)
    trip.refresh_from_db()
    assert third["failed"] == [trip.pk] and trip.status == "failed"
    assert "resumed once already" in trip.error and enqueued == [trip.pk]
