"""Doorbells between processes, the ring of a finished trip, and the web's long-lived threads."""

import asyncio
import socket
import threading

import pytest
from asgiref.sync import sync_to_async

from clutch_site.asgi import LongLivedThreads
from clutch_site.doorbell import Doorbells, trip_bells
from fahrtenbuch import services
from fahrtenbuch.models import Trip, TripStatus


def test_a_ring_reaches_the_listeners_whose_names_match(tmp_path):
    bells = Doorbells(f"test:{tmp_path}")
    mine = bells.listen("trip-7-a")
    other = bells.listen("trip-70-b")
    try:
        assert bells.ring("trip-7-*") == 1
        assert mine.recv(16) == b"!"
        with pytest.raises(BlockingIOError):
            other.recv(16)
    finally:
        bells.hang_up(mine)
        bells.hang_up(other)
    assert not list(bells.directory.glob("trip-7*.sock")), "hanging up removes the socket file"


def test_a_listener_whose_process_died_is_removed_by_the_next_ring(tmp_path):
    bells = Doorbells(f"test:{tmp_path}")
    bells.directory.mkdir(parents=True, exist_ok=True)
    stale = bells.directory / "trip-9-dead.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(stale))  # closed without unlinking: nobody listens there
    assert bells.ring("trip-9-*") == 0
    assert not stale.exists()


@pytest.mark.django_db(transaction=True)
def test_finishing_a_trip_writes_the_last_events_and_rings_its_waiters(member):
    trip = Trip.objects.create(user=member, task="t", status=TripStatus.RUNNING)
    bells = trip_bells()
    waiter = bells.listen(f"trip-{trip.pk}-test")
    try:
        finished = services.trip_finish(
            trip,
            status=TripStatus.SUCCEEDED,
            fields={"output": "done", "latency_ms": 5},
            events=[("output", {"chunks": {"1": "done"}}), ("legs", {"legs": []})],
        )
        assert finished
        assert waiter.recv(16) == b"!"
    finally:
        bells.hang_up(waiter)
    kinds = list(trip.events.order_by("id").values_list("kind", flat=True))
    assert kinds == ["output", "legs", "status"]


@pytest.mark.django_db(transaction=True)
def test_a_cancelled_trip_keeps_its_status_but_gets_the_driver_s_last_events(member):
    trip = Trip.objects.create(user=member, task="t", status=TripStatus.CANCELLED)
    assert not services.trip_finish(
        trip,
        status=TripStatus.SUCCEEDED,
        fields={"output": "late"},
        events=[("output", {"chunks": {"1": "late"}})],
    )
    trip.refresh_from_db()
    assert trip.status == TripStatus.CANCELLED and trip.output == ""
    assert list(trip.events.values_list("kind", flat=True)) == ["output"]


def test_requests_run_their_sync_parts_on_long_lived_threads():
    seen: list[str] = []

    async def app(scope, receive, send):
        seen.append(await sync_to_async(lambda: threading.current_thread().name)())
        if scope.get("hold"):
            await asyncio.sleep(0.05)

    wrapped = LongLivedThreads(app, threads=2)

    async def main():
        for _ in range(3):  # one after the other: the same, least busy thread every time
            await wrapped({"type": "http"}, None, None)
        # Two at once: the second goes to the other thread.
        await asyncio.gather(
            wrapped({"type": "http", "hold": True}, None, None),
            wrapped({"type": "http", "hold": True}, None, None),
        )

    asyncio.run(main())
    assert seen[:3] == ["web-0_0"] * 3
    assert sorted(seen[3:]) == ["web-0_0", "web-1_0"]
