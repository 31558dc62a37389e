"""The live feed: consumers, the outbox relay, and events crossing from a worker process to
the web process's WebSocket within a second."""

import asyncio
import re
import time
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.test import Client

from clutch_site.asgi import application, websocket_urlpatterns
from fahrtenbuch import live
from fahrtenbuch.models import Trip, TripEvent
from garage import tankuhr
from garage.fahrer import Fahrer
from garage.models import FitnessCriteria

BUG = "Fix the authentication bug in the login module"
router = URLRouter(websocket_urlpatterns)


@pytest.fixture
def car(defaults, monkeypatch):
    monkeypatch.setenv("CLUTCH_PRUEFSTAND_LATENCY", "0")
    FitnessCriteria.objects.update(epsilon_start=0)
    return defaults


def socket(path: str, user) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(router, path)
    communicator.scope["user"] = user
    return communicator


async def receive_until(communicator, needle: str, timeout: float = 5.0) -> str:
    """Everything received until a message contains ``needle``."""
    seen = ""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{needle!r} did not arrive; got:\n{seen[-3000:]}")
        seen += await communicator.receive_from(timeout=remaining)
    return seen


def run(scenario):
    """Run an async scenario; the relay it starts stops with it."""

    async def wrapped():
        try:
            return await scenario()
        finally:
            await live.relay.stop()

    return async_to_sync(wrapped)()


def queued_trip(user) -> Trip:
    trip, _ = Fahrer(user=user, seed=1).submit(BUG)
    return trip


# --- who may connect ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_anonymous_sockets_are_refused(car, member):
    trip = queued_trip(member)

    async def scenario():
        for path in ("/ws/cockpit/", f"/ws/trips/{trip.pk}/"):
            connected, code = await socket(path, AnonymousUser()).connect()
            assert (connected, code) == (False, 4401)

    run(scenario)


@pytest.mark.django_db(transaction=True)
def test_another_members_trip_is_refused_with_403(car, member, outsider):
    trip = queued_trip(member)

    async def scenario():
        connected, code = await socket(f"/ws/trips/{trip.pk}/", outsider).connect()
        assert (connected, code) == (False, 4403)
        connected, code = await socket("/ws/trips/999999/", member).connect()
        assert (connected, code) == (False, 4404)

    run(scenario)


@pytest.mark.django_db(transaction=True)
def test_the_full_stack_authenticates_with_the_session_cookie(car, member):
    browser = Client()
    browser.force_login(member)
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()

    async def scenario():
        headers = [(b"origin", b"http://127.0.0.1"), (b"cookie", cookie)]
        communicator = WebsocketCommunicator(application, "/ws/cockpit/", headers=headers)
        connected, _ = await communicator.connect()
        assert connected
        assert 'id="fuel-gauge"' in await communicator.receive_from(timeout=5)
        await communicator.disconnect()
        stranger = WebsocketCommunicator(
            application, "/ws/cockpit/", headers=[(b"origin", b"http://evil.example")]
        )
        connected, _ = await stranger.connect()
        assert not connected

    run(scenario)


# --- the cockpit -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_cockpit_gets_a_snapshot_then_the_zone_change_live(car, member):
    async def scenario():
        communicator = socket("/ws/cockpit/", member)
        assert (await communicator.connect())[0]
        snapshot = await communicator.receive_from(timeout=5)
        for part in ("fuel-gauge", "tacho", "gearbox", "running-trips"):
            assert f'id="{part}"' in snapshot and 'hx-swap-oob="true"' in snapshot
        assert 'data-zone="green"' in snapshot

        def spend():
            tankuhr.settle(tankuhr.reserve(amount=Decimal("35")), actual=Decimal("35"))

        started = time.monotonic()
        await sync_to_async(spend)()
        fragment = await receive_until(communicator, 'data-zone="orange"')
        assert time.monotonic() - started < 1.0
        assert '<section class="card fuel zone-orange" id="fuel-gauge"' in fragment
        await communicator.disconnect()

    run(scenario)


@pytest.mark.django_db(transaction=True)
def test_cockpit_running_trips_are_scoped_to_the_viewer(car, member, outsider):
    async def scenario():
        mine, theirs = socket("/ws/cockpit/", member), socket("/ws/cockpit/", outsider)
        for communicator in (mine, theirs):
            assert (await communicator.connect())[0]
            await communicator.receive_from(timeout=5)
        trip = await sync_to_async(queued_trip)(member)
        html = await receive_until(mine, f"/trips/{trip.pk}/")
        assert 'id="running-trips"' in html
        # The other member's cockpit may update its counts, but never lists the trip.
        received = ""
        while not await theirs.receive_nothing(timeout=0.8):
            received += await theirs.receive_from()
        assert f"/trips/{trip.pk}/" not in received
        await mine.disconnect()
        await theirs.disconnect()

    run(scenario)


# --- a trip ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_trip_page_gets_appended_output_then_the_final_state(car, member):
    trip = queued_trip(member)

    async def scenario():
        communicator = socket(f"/ws/trips/{trip.pk}/", member)
        assert (await communicator.connect())[0]
        after = await sync_to_async(
            lambda: TripEvent.objects.filter(trip=trip).order_by("-id").first().pk
        )()
        await communicator.send_json_to({"after": after})

        def write(kind, **data):
            return TripEvent.objects.create(trip=trip, kind=kind, data=data).pk

        await sync_to_async(write)("output", chunks={"1": "Hello <b>"})
        first = await receive_until(communicator, "Hello")
        assert f'id="stream-{trip.pk}-1"' in first and 'hx-swap-oob="beforeend"' in first
        assert "Hello &lt;b&gt;" in first  # escaped: model output is untrusted
        assert f'id="trip-cursor-{trip.pk}"' in first

        def finish():
            Trip.objects.filter(pk=trip.pk).update(
                status="succeeded", output="Hello <b>world", output_tokens=7
            )
            return write("status", status="succeeded", error="")

        last = await sync_to_async(finish)()
        final = await receive_until(communicator, 'data-status="succeeded"')
        assert f'id="trip-output-{trip.pk}"' in final and "Hello &lt;b&gt;world" in final
        assert f'data-after="{last}"' in final
        await communicator.disconnect()

    run(scenario)


@pytest.mark.django_db(transaction=True)
def test_a_reconnecting_page_gets_exactly_what_it_missed(car, member):
    trip = queued_trip(member)
    rendered = TripEvent.objects.filter(trip=trip).order_by("-id").first().pk
    missed = [
        TripEvent.objects.create(trip=trip, kind="output", data={"chunks": {"1": f"part{i} "}}).pk
        for i in range(3)
    ]

    async def scenario():
        communicator = socket(f"/ws/trips/{trip.pk}/", member)
        assert (await communicator.connect())[0]
        await communicator.send_json_to({"after": missed[0]})
        html = await receive_until(communicator, f'data-after="{missed[-1]}"')
        assert "part0" not in html
        assert html.index("part1") < html.index("part2")
        # Nothing arrives twice: the relay's own batch of these events is dropped.
        assert await communicator.receive_nothing(timeout=0.6)
        await communicator.disconnect()

        again = socket(f"/ws/trips/{trip.pk}/", member)
        assert (await again.connect())[0]
        await again.send_json_to({"after": rendered})
        html = await receive_until(again, "part2")
        assert "part0" in html
        await again.disconnect()

    run(scenario)


@pytest.mark.django_db(transaction=True)
def test_relay_waits_for_a_missing_id_before_passing_it(car, member, monkeypatch):
    monkeypatch.setattr(live, "GAP_WAIT_S", 0.3)
    trip = queued_trip(member)
    relay = live.Relay()
    relay._read()  # starts at the newest event
    top = relay.cursor
    TripEvent.objects.create(pk=top + 2, trip=trip, kind="progress", data={})

    assert [row[0] for row in relay._read()] == [top + 2]
    assert relay.cursor == top  # top + 1 may still be committing elsewhere
    TripEvent.objects.create(pk=top + 1, trip=trip, kind="progress", data={})
    assert [row[0] for row in relay._read()] == [top + 1]
    assert relay.cursor == top + 2

    TripEvent.objects.create(pk=top + 4, trip=trip, kind="progress", data={})
    relay._read()
    time.sleep(0.35)
    relay._read()
    assert relay.cursor == top + 4  # a gap that stays is a rolled-back transaction


@pytest.mark.django_db(transaction=True)
def test_relay_stops_after_the_last_page_left(car, member, monkeypatch):
    monkeypatch.setattr(live, "IDLE_STOP_S", 0.3)

    async def scenario():
        communicator = socket("/ws/cockpit/", member)
        assert (await communicator.connect())[0]
        await communicator.receive_from(timeout=5)
        assert live.relay.running
        await communicator.disconnect()
        for _ in range(30):
            if not live.relay.running:
                break
            await asyncio.sleep(0.1)
        assert not live.relay.running

    run(scenario)


# --- across processes ------------------------------------------------------------------------


def event_times(ids: list[int]) -> dict[int, float]:
    return {
        pk: created.timestamp()
        for pk, created in TripEvent.objects.filter(pk__in=ids).values_list("id", "created_at")
    }


@pytest.mark.scaleout
def test_a_workers_events_reach_the_page_within_a_second(member, car, start_consumer):
    """A Huey worker in another process drives the trip and writes its events; the relay in
    this (web) process pushes them to the page's socket."""
    from fahrtenbuch.tasks import run_trip

    worker = start_consumer(CLUTCH_PRUEFSTAND_LATENCY="0.3")
    trip = queued_trip(member)

    async def scenario():
        communicator = socket(f"/ws/trips/{trip.pk}/", member)
        assert (await communicator.connect())[0]
        after = await sync_to_async(
            lambda: TripEvent.objects.filter(trip=trip).order_by("-id").first().pk
        )()
        await communicator.send_json_to({"after": after})
        await sync_to_async(run_trip)(trip.pk)
        arrivals = []
        html = ""
        deadline = time.monotonic() + 30
        while 'data-status="succeeded"' not in html:
            try:
                message = await communicator.receive_from(timeout=deadline - time.monotonic())
            except TimeoutError:
                raise AssertionError(worker.log.read_text()[-3000:]) from None
            arrivals.append((time.time(), message))
            html += message
        await communicator.disconnect()
        return arrivals, html

    arrivals, html = run(scenario)

    assert 'data-status="running"' in html
    assert "Simulated answer" in html
    assert len([m for _, m in arrivals if 'hx-swap-oob="beforeend"' in m]) >= 2  # it streamed
    newest = [int(re.search(r'data-after="(\d+)"', m).group(1)) for _, m in arrivals]
    written = event_times(newest)
    delays = [at - written[pk] for (at, _), pk in zip(arrivals, newest, strict=True)]
    assert max(delays) < 1.0, delays
