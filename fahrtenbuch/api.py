"""The trip API: route, submit, run, list, read, cancel, feedback."""

import asyncio
import contextlib
import socket
import time
import uuid

from asgiref.sync import sync_to_async
from ninja import Query, Router, Schema, Status

from clutch_site.doorbell import Doorbells, trip_bells
from fahrtenbuch import selectors, services
from fahrtenbuch.models import Trip
from fahrtenbuch.schemas import (
    DecisionOut,
    ErrorOut,
    FeedbackIn,
    RunIn,
    RunOut,
    SubmitOut,
    TripDetailOut,
    TripIn,
    TripOut,
    TripPageOut,
    TripStatusName,
)
from garage.fahrer import Fahrer

router = Router(tags=["trips"])
ERRORS = {401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 413: ErrorOut, 422: ErrorOut}


def trip_out(trip: Trip) -> dict:
    return {
        "id": trip.pk,
        "user": trip.user.get_username() if trip.user_id else None,
        "status": trip.status,
        "task": trip.task,
        "road": trip.road,
        "gear": trip.gear_name,
        "throttle": trip.throttle,
        "pattern": trip.pattern,
        "tempo": trip.tempo,
        "zone": trip.zone,
        "explored": trip.explored,
        "simulated": trip.simulated,
        "reasons": trip.reasons,
        "output": trip.output,
        "error": trip.error,
        "error_kind": trip.error_kind,
        "usage": {
            "input_tokens": trip.input_tokens,
            "output_tokens": trip.output_tokens,
            "cached_tokens": trip.cached_tokens,
            "thinking_tokens": trip.thinking_tokens,
        },
        "estimated_cost_usd": str(trip.estimated_cost_usd),
        "cost_usd": str(trip.cost_usd),
        "latency_ms": trip.latency_ms,
        "ttft_ms": trip.ttft_ms,
        "retries": trip.retries,
        "failovers": trip.failovers,
        "anomalies": trip.anomalies,
        "feedback": trip.feedback,
        "feedback_note": trip.feedback_note,
        "created_at": trip.created_at,
        "started_at": trip.started_at,
        "finished_at": trip.finished_at,
    }


def trip_detail_out(trip: Trip) -> dict:
    legs = [
        {
            **{
                f: getattr(leg, f)
                for f in (
                    "position",
                    "phase",
                    "role",
                    "title",
                    "gear_name",
                    "status",
                    "output",
                    "error",
                    "error_kind",
                    "attempts",
                    "input_tokens",
                    "output_tokens",
                    "thinking_tokens",
                    "latency_ms",
                    "ttft_ms",
                    "simulated",
                )
            },
            "cost_usd": str(leg.cost_usd),
        }
        for leg in trip.legs.order_by("position")
    ]
    return {**trip_out(trip), "legs": legs}


def decision_out(trip: Trip) -> dict:
    event = trip.events.filter(kind="decision").first()
    return event.data if event else {}


@router.post("/route", response={200: DecisionOut, **ERRORS}, summary="Decide only: nothing runs")
def route(request, payload: TripIn):
    decision = Fahrer(user=request.auth).entscheiden(payload.task, **payload.options())
    return decision.as_dict()


@router.post("/trips", response={202: SubmitOut, **ERRORS}, summary="Submit a trip to the workers")
def submit(request, payload: TripIn):
    trip, created = services.trip_submit(
        user=request.auth,
        task=payload.task,
        options=payload.options(),
        idempotency_key=payload.idempotency_key,
    )
    return Status(202, {"trip": trip_out(trip), "decision": decision_out(trip), "created": created})


# A backstop for rings that cannot arrive (the worker on another machine): look anyway.
LOOK_EVERY_S = 0.05


def _waited_for(trip_id: int) -> Trip:
    trip = Trip.objects.select_related("user").filter(pk=trip_id).first()
    if trip is None:  # an admin deleted it while the caller waited
        raise services.ApplicationError(f"Trip {trip_id} was deleted meanwhile.", status=404)
    return trip


def _detail(trip_id: int) -> dict:
    return trip_detail_out(_waited_for(trip_id))


def _detail_if_finished(trip_id: int) -> dict | None:
    trip = _waited_for(trip_id)
    return trip_detail_out(trip) if trip.is_finished else None


def _submit_and_listen(user, payload: RunIn) -> tuple[Trip, socket.socket | None]:
    """Submit, and listen for the trip's ring (fahrtenbuch.services.trip_finish) if it is
    still to be driven, in one trip to the database thread."""
    trip, _ = services.trip_submit(
        user=user,
        task=payload.task,
        options=payload.options(),
        idempotency_key=payload.idempotency_key,
    )
    if trip.status not in ("queued", "running"):
        return trip, None
    return trip, trip_bells().listen(f"trip-{trip.pk}-{uuid.uuid4().hex[:12]}")


async def _wait_for_detail(trip_id: int, sock: socket.socket, wait_s: float) -> dict:
    """Wait up to ``wait_s`` for the ring that the trip finished, and return it with its
    legs. The database decides; a ring only wakes. A look every LOOK_EVERY_S covers the
    rings that cannot arrive: a worker on another machine, or a trip that finished before
    its socket was bound."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + wait_s
    try:
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(loop.sock_recv(sock, 16), min(left, LOOK_EVERY_S))
            if (detail := await sync_to_async(_detail_if_finished)(trip_id)) is not None:
                return detail
    finally:
        Doorbells.hang_up(sock)
    return await sync_to_async(_detail)(trip_id)


@router.post(
    "/run",
    response={200: RunOut, 202: RunOut, **ERRORS},
    summary="Submit and wait for the result (202 with the trip if it takes longer)",
)
async def run(request, payload: RunIn):
    trip, sock = await sync_to_async(_submit_and_listen)(request.auth, payload)
    if sock is None:
        detail = await sync_to_async(_detail)(trip.pk)
    else:
        detail = await _wait_for_detail(trip.pk, sock, payload.wait_s)
    if detail["status"] not in ("queued", "running"):
        return Status(
            200,
            {"finished": True, "message": f"Trip {trip.pk} {detail['status']}.", "trip": detail},
        )
    return Status(
        202,
        {
            "finished": False,
            "trip": detail,
            "message": f"Trip {trip.pk} is still {detail['status']} after {payload.wait_s:g} s; "
            f"poll GET /api/trips/{trip.pk}.",
        },
    )


class TripFilters(Schema):
    status: TripStatusName | None = None
    road: str | None = None
    gear: str | None = None
    user: str | None = None
    before: int | None = None
    limit: int = 50


@router.get("/trips", response={200: TripPageOut, **ERRORS}, summary="Trips, newest first")
def list_trips(request, filters: Query[TripFilters]):
    if not 1 <= filters.limit <= 500:
        raise services.ApplicationError("limit must be from 1 to 500.")
    trips, next_before = selectors.trip_page(
        request.auth,
        status=filters.status,
        road=filters.road,
        gear=filters.gear,
        owner=filters.user,
        before=filters.before,
        limit=filters.limit,
    )
    return {"items": [trip_out(t) for t in trips], "next_before": next_before}


@router.get(
    "/trips/{int:trip_id}",
    response={200: TripDetailOut, **ERRORS},
    summary="One trip with its legs",
)
def get_trip(request, trip_id: int):
    return trip_detail_out(selectors.trip_for(request.auth, trip_id))


@router.post(
    "/trips/{int:trip_id}/cancel", response={200: TripOut, **ERRORS}, summary="Cancel a trip"
)
def cancel(request, trip_id: int):
    trip = selectors.trip_for(request.auth, trip_id)
    return trip_out(services.trip_cancel(trip, by=request.auth.get_username()))


@router.post(
    "/trips/{int:trip_id}/feedback",
    response={200: TripOut, **ERRORS},
    summary="Thumbs up or down, with a correction note",
)
def feedback(request, trip_id: int, payload: FeedbackIn):
    trip = selectors.trip_for(request.auth, trip_id)
    return trip_out(services.trip_feedback(trip, thumbs=payload.thumbs, note=payload.note))
