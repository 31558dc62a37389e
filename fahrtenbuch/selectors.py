"""Permission-scoped reads of the trip log: members see their own trips, admins all."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import QuerySet, Subquery
from django.utils import timezone

from fahrtenbuch.models import Trip, TripEvent, TripStatus
from fahrtenbuch.services import ApplicationError


def trips_visible_to(user) -> QuerySet[Trip]:
    trips = Trip.objects.select_related("user")
    return trips if user.is_staff else trips.filter(user=user)


def trip_for(user, trip_id: int) -> Trip:
    """The trip if ``user`` may see it; 404 when it does not exist, 403 when it is someone else's."""
    trip = Trip.objects.select_related("user").filter(pk=trip_id).first()
    if trip is None:
        raise ApplicationError(f"Trip {trip_id} does not exist.", status=404)
    if not user.is_staff and trip.user_id != user.pk:
        raise ApplicationError(f"Trip {trip_id} belongs to someone else.", status=403)
    return trip


def trip_page(
    user,
    *,
    status: str | None = None,
    road: str | None = None,
    gear: str | None = None,
    owner: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> tuple[list[Trip], int | None]:
    """Newest first, keyset-paginated by id: (trips, the ``before`` for the next page or None)."""
    trips = trips_visible_to(user)
    if status:
        trips = trips.filter(status=status)
    if road:
        trips = trips.filter(road=road)
    if gear:
        trips = trips.filter(gear_name=gear)
    if owner:
        trips = trips.filter(user__username=owner)
    if before:
        trips = trips.filter(pk__lt=before)
    page = list(trips.order_by("-id")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return page, (page[-1].pk if more and page else None)


@dataclass(frozen=True)
class HistoryFilters:
    """What the history page filters on; empty fields do not filter."""

    road: str = ""
    gear: str = ""
    status: str = ""
    person: str = ""
    q: str = ""
    since: date | None = None  # first day, inclusive
    until: date | None = None  # last day, inclusive

    def active(self) -> bool:
        return any((self.road, self.gear, self.status, self.person, self.q, self.since, self.until))


def _history(user, filters: HistoryFilters) -> QuerySet[Trip]:
    trips = trips_visible_to(user)
    if filters.status:
        trips = trips.filter(status=filters.status)
    if filters.road:
        trips = trips.filter(road=filters.road)
    if filters.gear:
        trips = trips.filter(gear_name=filters.gear)
    if filters.person and user.is_staff:
        trips = trips.filter(user__username=filters.person)
    if filters.q:
        trips = trips.filter(task__icontains=filters.q)
    zone = timezone.get_current_timezone()
    if filters.since:
        start = datetime.combine(filters.since, time.min, tzinfo=zone)
        trips = trips.filter(created_at__gte=start)
        # Ids grow with created_at, so the first trip of the range bounds the id scan too:
        # newest-first pages then walk the primary key instead of sorting the whole range.
        first = Trip.objects.filter(created_at__gte=start).order_by("created_at").values("id")[:1]
        trips = trips.filter(pk__gte=Subquery(first)) if first.exists() else trips.none()
    if filters.until:
        end = datetime.combine(filters.until + timedelta(days=1), time.min, tzinfo=zone)
        trips = trips.filter(created_at__lt=end)
        last = Trip.objects.filter(created_at__lt=end).order_by("-created_at").values("id")[:1]
        trips = trips.filter(pk__lte=Subquery(last)) if last.exists() else trips.none()
    return trips


def trip_history(
    user, filters: HistoryFilters, *, before: int | None = None, limit: int = 50
) -> tuple[list[Trip], int | None]:
    """One page of the history, newest first, keyset-paginated by id:
    (trips, the ``before`` of the next page or None)."""
    trips = _history(user, filters)
    if before:
        trips = trips.filter(pk__lt=before)
    page = list(trips.order_by("-id")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return page, (page[-1].pk if more and page else None)


CSV_FIELDS = (
    "id",
    "user__username",
    "created_at",
    "finished_at",
    "status",
    "road",
    "gear_name",
    "throttle",
    "pattern",
    "tempo",
    "zone",
    "input_tokens",
    "output_tokens",
    "thinking_tokens",
    "cost_usd",
    "latency_ms",
    "retries",
    "failovers",
    "feedback",
    "simulated",
    "task",
)


def trip_rows(user, filters: HistoryFilters, *, batch: int = 2000) -> Iterator[list[tuple]]:
    """Every trip the history shows, as CSV_FIELDS tuples in batches, newest first; each batch
    is one keyset query, so an export of a million trips holds no long read open."""
    trips = _history(user, filters)
    before = None
    while True:
        page = trips.filter(pk__lt=before) if before else trips
        rows = list(page.order_by("-id").values_list(*CSV_FIELDS)[:batch])
        if not rows:
            return
        yield rows
        if len(rows) < batch:
            return
        before = rows[-1][0]


def running_trips(user, *, limit: int = 20) -> list[Trip]:
    """Queued and running trips the person may see, newest first."""
    return running_trips_of(None if user.is_staff else user.pk, limit=limit)


def running_trips_of(user_id: int | None, *, limit: int = 20) -> list[Trip]:
    """Queued and running trips of one person, or of everyone with ``None``, newest first.
    One query per status, so each walks its (user, status, id) or (status, id) index."""
    found: list[Trip] = []
    for status in (TripStatus.RUNNING, TripStatus.QUEUED):
        trips = Trip.objects.select_related("user").filter(status=status)
        if user_id is not None:
            trips = trips.filter(user_id=user_id)
        found += trips.order_by("-id")[:limit]
    return sorted(found, key=lambda trip: trip.pk, reverse=True)[:limit]


def trip_streams(trip: Trip, *, upto: int | None = None) -> tuple[dict[int, str], int]:
    """What a running trip has streamed so far, per leg position, from its output events,
    and the id of its newest event (the cursor a live page continues from)."""
    events = TripEvent.objects.filter(trip=trip)
    if upto is not None:
        events = events.filter(pk__lte=upto)
    streams: dict[int, str] = {}
    last = 0
    for pk, kind, data in events.order_by("id").values_list("id", "kind", "data"):
        last = pk
        if kind == "output":
            for position, text in (data.get("chunks") or {}).items():
                streams[int(position)] = streams.get(int(position), "") + str(text)
    return dict(sorted(streams.items())), last
