"""The live feed: an outbox relay in the web process.

Workers run in other processes (Huey), so they cannot reach this process's Channels groups.
They append TripEvent rows, the outbox; the relay here reads new rows by increasing id a few
times a second, renders HTML fragments for the pages watching and pushes them to their
Channels groups, where htmx's ws extension swaps them in by element id. Each tick it also
renders the cockpit's figures and sends the ones that changed (budget spend, for one, moves
without any trip event).

Groups carry this process's token: with channels_redis several web processes share one layer,
and each relay serves only the pages connected to its own process, so nothing arrives twice.

The relay starts with the first WebSocket that connects to this process, so management
commands and tests that open no socket never start it, and stops a while after the last one
has gone.
"""

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

from channels.layers import get_channel_layer
from django.db import DatabaseError, connection
from django.db.models import Max
from django.template.loader import render_to_string
from django.utils.html import format_html

from fahrtenbuch.models import Leg, Trip, TripEvent

log = logging.getLogger(__name__)

TICK_S = 0.2  # a worker's event reaches the page within about this, plus rendering
GEARBOX_EVERY_S = 2.0  # the gearbox table costs a query per gear; it changes rarely
IDLE_STOP_S = 30.0  # stop this long after the last page left
GAP_WAIT_S = 2.0  # an id missing below newer ones: a transaction still committing, or rolled back
BATCH = 2000
REFRESH_EVERY_S = 1.0  # while only output streams, legs and figures are re-rendered this often


# --- fragments ---------------------------------------------------------------------------


def stream_fragment(trip_id: int, position: int, text: str, label: str = "") -> str:
    """Appends ``text`` (escaped: model output is untrusted) to the leg's stream; the page
    opens a box for a leg it has not seen yet (data-stream-parent, see static/js/clutch.js)."""
    return format_html(
        '<div id="stream-{}-{}" class="stream-text" data-stream-parent="streams-{}" '
        'data-label="{}" hx-swap-oob="beforeend">{}</div>',
        trip_id,
        position,
        trip_id,
        label,
        text,
    )


def cursor_fragment(trip_id: int, after: int) -> str:
    return format_html(
        '<span id="trip-cursor-{}" data-after="{}" hidden hx-swap-oob="true"></span>',
        trip_id,
        after,
    )


def _leg_labels(trip_id: int) -> dict[int, str]:
    legs = list(Leg.objects.filter(trip_id=trip_id).values_list("position", "title", "role"))
    if len(legs) < 2:
        return {}
    return {position: title or role for position, title, role in legs}


def render_trip_batch(
    trip_id: int, events: list[tuple[int, str, dict]], *, refresh: bool = False
) -> dict | None:
    """Fragments for some of a trip's events: output chunks to append, one per event, and a
    refresh of the trip's live parts (status, figures, legs, actions) when anything but
    output happened, or when ``refresh`` asks for one (legs start without an event)."""
    from fahrtenbuch.views import trip_state

    trip = Trip.objects.select_related("user").filter(pk=trip_id).first()
    if trip is None or not events:
        return None
    appends: list[tuple[int, str]] = []
    labels: dict[int, str] | None = None
    for pk, kind, data in events:
        if kind != "output":
            continue
        for position, text in (data.get("chunks") or {}).items():
            if labels is None:
                labels = _leg_labels(trip_id)
            appends.append(
                (
                    pk,
                    stream_fragment(
                        trip_id, int(position), str(text), labels.get(int(position), "")
                    ),
                )
            )
    html = ""
    if refresh or any(kind != "output" for _, kind, _ in events):
        html = render_to_string(
            "fahrtenbuch/trip_detail.html#trip-live",
            {**trip_state(trip, with_streams=False), "oob": True},
        )
    return {"ids": [pk for pk, _, _ in events], "appends": appends, "refresh": html}


def render_trip_replay(trip_id: int, after: int) -> dict | None:
    """What a page that rendered events up to ``after`` has missed."""
    events = list(
        TripEvent.objects.filter(trip_id=trip_id, pk__gt=after)
        .order_by("id")
        .values_list("id", "kind", "data")
    )
    return render_trip_batch(trip_id, events, refresh=True)


def _viewer(scope: str) -> SimpleNamespace:
    return SimpleNamespace(is_staff=scope == "all")


def render_cockpit(scopes: list[str], *, with_gearbox: bool) -> dict[tuple[str, str], str]:
    """The cockpit's live parts, each as an out-of-band fragment, keyed by (topic, part):
    topic ``cockpit`` for what everyone sees, ``cockpit-<scope>`` for the running trips of
    one viewer (``all`` for admins, ``u<id>`` for a member)."""
    from fahrtenbuch.selectors import running_trips_of
    from garage.selectors import fuel_gauge, gearbox_status, tacho_overview

    page = "clutch_site/home.html#"
    parts = {
        ("cockpit", "fuel"): render_to_string(
            page + "fuel-gauge", {"fuel": fuel_gauge(), "oob": True}
        ),
        ("cockpit", "tacho"): render_to_string(
            page + "tacho", {"tacho": tacho_overview(), "oob": True}
        ),
    }
    if with_gearbox:
        parts[("cockpit", "gearbox")] = render_to_string(
            page + "gearbox", {"gears": gearbox_status(), "oob": True}
        )
    for scope in scopes:
        user_id = None if scope == "all" else int(scope.removeprefix("u"))
        parts[(f"cockpit-{scope}", "running")] = render_to_string(
            page + "running-trips",
            {"running": running_trips_of(user_id), "user": _viewer(scope), "oob": True},
        )
    return parts


def render_cockpit_snapshot(user) -> str:
    """Every live part of the cockpit for one viewer, sent when a page (re)connects."""
    scope = cockpit_scope(user)
    parts = render_cockpit([scope], with_gearbox=True)
    return "".join(parts.values())


def cockpit_scope(user) -> str:
    return "all" if user.is_staff else f"u{user.pk}"


# --- the relay ---------------------------------------------------------------------------


class Relay:
    """Reads the outbox and pushes fragments; one per web process."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex[:12]
        self.watchers: Counter[str] = Counter()
        self.cursor: int | None = None  # every event id up to here has been handled
        self.seen: set[int] = set()  # ids above the cursor already handled
        self.gap_since: float | None = None
        self.task: asyncio.Task | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clutch-relay")
        self.sent: dict[tuple[str, str], str] = {}
        self.gearbox_at = 0.0
        self.refreshed: dict[int, float] = {}  # trip id → when its live parts were last rendered
        self.ticks = 0

    def group(self, topic: str) -> str:
        return f"clutch.{topic}.{self.token}"

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def ensure_running(self) -> None:
        """Start the relay on this event loop unless it already runs there."""
        loop = asyncio.get_running_loop()
        if self.running and self.task.get_loop() is loop:
            return
        self.cursor, self.gap_since = None, None
        self.seen.clear()
        self.sent.clear()
        self.task = loop.create_task(self._run(), name="clutch-relay")

    def watch(self, topic: str) -> None:
        self.watchers[topic] += 1

    def unwatch(self, topic: str) -> None:
        self.watchers[topic] -= 1
        if self.watchers[topic] <= 0:
            del self.watchers[topic]
            if topic.startswith("trip-"):
                self.refreshed.pop(int(topic.removeprefix("trip-")), None)
            self.sent = {key: html for key, html in self.sent.items() if key[0] != topic}

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.task = None
        await self.db(_close_connection)

    async def db(self, fn, *args, **kwargs):
        """Run ``fn`` on the relay's own thread, with its own database connection."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor, functools.partial(_on_db_thread, fn, *args, **kwargs)
        )

    async def _run(self) -> None:
        idle_since: float | None = None
        while True:
            started = time.monotonic()
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bad tick must not end the live feed
                log.exception("live relay tick failed")
            if self.watchers:
                idle_since = None
            elif idle_since is None:
                idle_since = started
            elif started - idle_since > IDLE_STOP_S:
                await self.db(_close_connection)  # an idle web process holds no connection
                return
            await asyncio.sleep(max(0.0, TICK_S - (time.monotonic() - started)))

    async def tick(self) -> None:
        self.ticks += 1
        layer = get_channel_layer()
        events = await self.db(self._read)
        watched = {
            int(topic.removeprefix("trip-")) for topic in self.watchers if topic.startswith("trip-")
        }
        by_trip: dict[int, list] = defaultdict(list)
        for pk, trip_id, kind, data in events:
            if trip_id in watched:
                by_trip[trip_id].append((pk, kind, data))
        now = time.monotonic()
        for trip_id, batch_events in by_trip.items():
            stale = now - self.refreshed.get(trip_id, 0.0) >= REFRESH_EVERY_S
            batch = await self.db(render_trip_batch, trip_id, batch_events, refresh=stale)
            if batch and batch["refresh"]:
                self.refreshed[trip_id] = now
            if batch:
                await layer.group_send(
                    self.group(f"trip-{trip_id}"), {"type": "trip.batch", **batch}
                )
        await self._cockpit(layer)

    async def _cockpit(self, layer) -> None:
        if "cockpit" not in self.watchers:
            return
        now = time.monotonic()
        with_gearbox = now - self.gearbox_at >= GEARBOX_EVERY_S
        if with_gearbox:
            self.gearbox_at = now
        scopes = [t.removeprefix("cockpit-") for t in self.watchers if t.startswith("cockpit-")]
        parts = await self.db(render_cockpit, scopes, with_gearbox=with_gearbox)
        for (topic, part), html in parts.items():
            if self.sent.get((topic, part)) != html:
                self.sent[(topic, part)] = html
                await layer.group_send(
                    self.group(topic), {"type": "cockpit.fragment", "html": html}
                )

    def _read(self) -> list[tuple]:
        """New events by increasing id. Ids are handed out before commit, so on PostgreSQL a
        lower id can become visible after a higher one: the cursor only passes a missing id
        once it has been missing for GAP_WAIT_S, and ids above it are remembered as seen."""
        if self.cursor is None:
            self.cursor = TripEvent.objects.aggregate(top=Max("id"))["top"] or 0
            return []
        rows = list(
            TripEvent.objects.filter(pk__gt=self.cursor)
            .order_by("id")
            .values_list("id", "trip_id", "kind", "data")[:BATCH]
        )
        if not rows:
            top = TripEvent.objects.aggregate(top=Max("id"))["top"] or 0
            if top < self.cursor:  # the table was emptied (tests flush it): start over
                self.cursor, self.gap_since = top, None
                self.seen.clear()
            return []
        fresh = [row for row in rows if row[0] not in self.seen]
        self.seen.update(row[0] for row in fresh)
        now = time.monotonic()
        for pk in sorted(self.seen):
            if pk != self.cursor + 1:
                if self.gap_since is None:
                    self.gap_since = now
                if now - self.gap_since < GAP_WAIT_S:
                    break
            self.cursor, self.gap_since = pk, None
            self.seen.discard(pk)
        return fresh


def _close_connection() -> None:
    connection.close()  # the relay thread's own connection: looked up on that thread


def _on_db_thread(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except DatabaseError:
        # A broken connection must not stay broken: the next tick opens a new one.
        connection.close()
        raise


relay = Relay()
