"""Writes to the trip log: submit, events, legs, finish, feedback, recovery."""

import os
from datetime import timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from clutch_site.doorbell import trip_bells
from clutch_site.rows import add_to
from fahrtenbuch.models import FINISHED_STATUSES, Leg, TachoMinute, Trip, TripEvent, TripStatus
from garage.engine.kupplung import Entscheidung
from garage.models import Gear


class ApplicationError(Exception):
    """A business rule said no; ``status`` is the HTTP status the API and pages answer with."""

    def __init__(self, message: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.message, self.status = message, status


def trip_event(trip_id: int, kind: str, **data) -> TripEvent:
    return TripEvent.objects.create(trip_id=trip_id, kind=kind, data=data)


def trip_events(trip_id: int, events: list[tuple[str, dict]]) -> None:
    """Several events in one insert, in order."""
    TripEvent.objects.bulk_create(
        [TripEvent(trip_id=trip_id, kind=kind, data=data) for kind, data in events]
    )


def trip_create(
    *, user, task: str, options: dict, decision: Entscheidung, idempotency_key: str | None = None
) -> tuple[Trip, bool]:
    """Record a decided trip (queued, or refused with its reason). Returns (trip, created);
    the same idempotency key from the same person returns the first trip."""
    gear = decision.gear
    refused = decision.is_refused
    trip = Trip(
        user=user,
        task=task,
        options=options,
        idempotency_key=idempotency_key or None,
        road=decision.strecke.road,
        analysis=decision.strecke.as_dict(),
        gear_id=Gear.objects.filter(name=gear.name).values_list("id", flat=True).first()
        if gear
        else None,
        gear_name=gear.name if gear else "",
        throttle=decision.throttle,
        pattern=decision.pattern,
        tempo=decision.strecke.tempo,
        zone=decision.zone,
        reasons=[r.as_dict() for r in decision.reasons],
        explored=decision.explored,
        simulated=bool(gear and gear.simulated),
        estimated_cost_usd=decision.estimated_cost_usd,
        status=TripStatus.REFUSED if refused else TripStatus.QUEUED,
        error=decision.refused or "",
        error_kind="refused" if refused else "",
        finished_at=timezone.now() if refused else None,
    )
    try:
        with transaction.atomic():
            trip.save()
            trip_events(
                trip.pk,
                [
                    ("decision", decision.as_dict()),
                    ("status", {"status": trip.status, "error": trip.error}),
                ],
            )
    except IntegrityError:
        # Two submissions with the same key raced; the other one won.
        if idempotency_key:
            return Trip.objects.get(user=user, idempotency_key=idempotency_key), False
        raise
    return trip, True


def trip_claim(trip_id: int) -> bool:
    """queued → running, atomically: exactly one worker wins a trip."""
    now = timezone.now()
    with transaction.atomic():
        claimed = Trip.objects.filter(pk=trip_id, status=TripStatus.QUEUED).update(
            status=TripStatus.RUNNING, started_at=now, heartbeat_at=now
        )
        if claimed:
            trip_event(trip_id, "status", status=TripStatus.RUNNING)
    return bool(claimed)


def trip_heartbeat(trip_id: int) -> None:
    Trip.objects.filter(pk=trip_id, status=TripStatus.RUNNING).update(heartbeat_at=timezone.now())


def leg_start(
    *,
    trip_id: int,
    position: int,
    phase: int,
    role: str,
    title: str,
    gear: Gear | None,
    throttle: float,
    prompt: str,
    simulated: bool,
) -> Leg:
    return Leg.objects.create(
        trip_id=trip_id,
        position=position,
        phase=phase,
        role=role,
        title=title[:200],
        gear=gear,
        gear_name=gear.name if gear else "",
        throttle=throttle,
        status="running",
        prompt=prompt,
        started_at=timezone.now(),
        simulated=simulated,
    )


def trip_finish(
    trip: Trip, *, status: str, fields: dict, events: list[tuple[str, dict]] = ()
) -> bool:
    """running → a final status with its figures, after the driver's last ``events``, in one
    transaction; False if the trip was already finished (cancelled meanwhile), in which case
    only the events are written and nothing is overwritten."""
    assert status in FINISHED_STATUSES
    now = timezone.now()
    with transaction.atomic():
        if events:
            trip_events(trip.pk, events)
        updated = (
            Trip.objects.filter(pk=trip.pk)
            .exclude(status__in=FINISHED_STATUSES)
            .update(status=status, finished_at=now, **fields)
        )
        if not updated:
            return False
        trip_event(trip.pk, "status", status=status, error=fields.get("error", ""))
        if status in (TripStatus.SUCCEEDED, TripStatus.FAILED):
            tacho_record(
                when=now,
                succeeded=status == TripStatus.SUCCEEDED,
                input_tokens=fields.get("input_tokens", 0),
                output_tokens=fields.get("output_tokens", 0),
                thinking_tokens=fields.get("thinking_tokens", 0),
                cost=fields.get("cost_usd", Decimal(0)),
                latency_ms=fields.get("latency_ms") or 0,
            )
    transaction.on_commit(lambda: trip_bells().ring(f"trip-{trip.pk}-*"))
    for name, value in fields.items():
        setattr(trip, name, value)
    trip.status, trip.finished_at = status, now
    return True


def tacho_record(
    *,
    when,
    succeeded: bool,
    input_tokens: int,
    output_tokens: int,
    thinking_tokens: int,
    cost: Decimal,
    latency_ms: int,
) -> None:
    minute = when.replace(second=0, microsecond=0)
    changes = {
        "trips": 1,
        "succeeded": int(succeeded),
        "failed": int(not succeeded),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "thinking_tokens": thinking_tokens,
        "cost_usd": cost,
        "latency_ms_sum": latency_ms,
    }
    if not add_to(TachoMinute, {"minute": minute}, **changes):
        try:
            with transaction.atomic():
                TachoMinute.objects.create(
                    minute=minute,
                    trips=1,
                    succeeded=int(succeeded),
                    failed=int(not succeeded),
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    thinking_tokens=thinking_tokens,
                    cost_usd=cost,
                    latency_ms_sum=latency_ms,
                )
        except IntegrityError:
            add_to(TachoMinute, {"minute": minute}, **changes)


def trip_cancel(trip: Trip, *, by) -> Trip:
    if trip.is_finished:
        raise ApplicationError(
            f"Trip {trip.pk} is already {trip.status}; nothing to cancel.", status=409
        )
    trip_finish(
        trip,
        status=TripStatus.CANCELLED,
        fields={"error": f"cancelled by {by}", "error_kind": "cancelled"},
    )
    trip.refresh_from_db()
    return trip


def trip_feedback(trip: Trip, *, thumbs: int, note: str = "") -> Trip:
    if thumbs not in (1, -1):
        raise ApplicationError("Feedback is 1 (thumbs up) or -1 (thumbs down).")
    if not trip.is_finished:
        raise ApplicationError("Give feedback once the trip has finished.", status=409)
    trip.feedback, trip.feedback_note, trip.feedback_at = thumbs, note.strip(), timezone.now()
    trip.save(update_fields=["feedback", "feedback_note", "feedback_at"])
    trip_event(trip.pk, "feedback", thumbs=thumbs, note=trip.feedback_note)
    return trip


def stale_after_s() -> float:
    """How long a running trip may go without a heartbeat; never less than three beats, so a
    live trip is not taken for orphaned when the two settings disagree."""
    stale = float(os.environ.get("CLUTCH_STALE_AFTER_S", "30"))
    return max(stale, 3 * float(os.environ.get("CLUTCH_HEARTBEAT_S", "5")))


def trip_submit(
    *, user, task: str, options: dict, idempotency_key: str | None = None
) -> tuple[Trip, bool]:
    """Decide and record a trip, then hand it to a worker once the transaction commits."""
    from fahrtenbuch.tasks import run_trip
    from garage.fahrer import Fahrer

    trip, created = Fahrer(user=user).submit(task, idempotency_key=idempotency_key, **options)
    if created and trip.status == TripStatus.QUEUED:
        # At once, or when the caller's transaction commits: a worker must find the trip.
        transaction.on_commit(lambda: run_trip(trip.pk))
    return trip, created


def trips_recover(*, enqueue, now=None) -> dict:
    """Trips whose worker died: resume them once, fail them the second time, with the reason.

    A running trip is orphaned when its heartbeat is older than CLUTCH_STALE_AFTER_S. One
    recoverer claims it (a conditional update, so several workers starting at once cannot
    both act), marks its unfinished legs failed, settles its held reservations at the reserved
    amount (the dead call may have been billed), and only then puts it back in the queue — or
    fails it if it already came back once. Queued trips older than that are enqueued again
    (the claim is atomic, so a duplicate does no harm).
    """
    from fahrtenbuch.models import Leg, LegStatus, SpendEntry, SpendState
    from garage import tankuhr

    now = now or timezone.now()
    limit = now - timedelta(seconds=stale_after_s())
    why = f"its worker stopped while driving it (no heartbeat for {stale_after_s():g} s)"
    resumed, failed, requeued = [], [], []
    orphans = Trip.objects.filter(status=TripStatus.RUNNING, heartbeat_at__lt=limit)
    for trip in orphans.order_by("id"):
        again = trip.resumed < 1
        with transaction.atomic():
            claimed = Trip.objects.filter(
                pk=trip.pk, status=TripStatus.RUNNING, heartbeat_at__lt=limit
            ).update(
                status=TripStatus.QUEUED if again else TripStatus.FAILED,
                resumed=F("resumed") + int(again),
                heartbeat_at=None,
                **(
                    {}
                    if again
                    else {
                        "error": f"{why}; it had been resumed once already",
                        "error_kind": "worker_lost",
                        "finished_at": now,
                    }
                ),
            )
            if not claimed:
                continue  # another recoverer took it, or its worker came back to life
            Leg.objects.filter(trip=trip, status__in=(LegStatus.PENDING, LegStatus.RUNNING)).update(
                status=LegStatus.FAILED, error=why, error_kind="worker_lost", finished_at=now
            )
            for entry in SpendEntry.objects.filter(leg__trip=trip, state=SpendState.HELD):
                tankuhr.settle(entry, actual=entry.reserved_usd)
            if again:
                trip_event(trip.pk, "status", status=TripStatus.QUEUED, error=f"resumed: {why}")
                resumed.append(trip.pk)
                transaction.on_commit(lambda trip_id=trip.pk: enqueue(trip_id))
            else:
                trip_event(trip.pk, "status", status=TripStatus.FAILED, error=why)
                tacho_record(
                    when=now,
                    succeeded=False,
                    input_tokens=0,
                    output_tokens=0,
                    thinking_tokens=0,
                    cost=Decimal(0),
                    latency_ms=0,
                )
                failed.append(trip.pk)
    for trip_id in Trip.objects.filter(status=TripStatus.QUEUED, created_at__lt=limit).values_list(
        "id", flat=True
    )[:500]:
        if trip_id not in resumed:
            enqueue(trip_id)
            requeued.append(trip_id)
    return {"resumed": resumed, "failed": failed, "requeued": requeued}
