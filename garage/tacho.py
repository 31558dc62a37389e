"""Tacho: system metrics from the per-minute rollup, cheap enough for every cockpit refresh."""

from datetime import timedelta
from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone

from fahrtenbuch.models import TachoMinute, Trip, TripStatus
from garage import bordcomputer

FIELDS = (
    "trips",
    "succeeded",
    "failed",
    "input_tokens",
    "output_tokens",
    "thinking_tokens",
    "cost_usd",
    "latency_ms_sum",
)


def _window(minutes: int, now=None) -> dict:
    now = now or timezone.now()
    since = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    sums = TachoMinute.objects.filter(minute__gte=since).aggregate(**{f: Sum(f) for f in FIELDS})
    trips = sums["trips"] or 0
    return {
        "trips": trips,
        "succeeded": sums["succeeded"] or 0,
        "failed": sums["failed"] or 0,
        "tokens": (sums["input_tokens"] or 0)
        + (sums["output_tokens"] or 0)
        + (sums["thinking_tokens"] or 0),
        "cost_usd": str(sums["cost_usd"] or Decimal(0)),
        "mean_latency_ms": round((sums["latency_ms_sum"] or 0) / trips) if trips else None,
    }


def summary(now=None) -> dict:
    """Trips, tokens and spend in the last minute and hour, latency percentiles, running trips."""
    return {
        "minute": _window(1, now),
        "hour": _window(60, now),
        "latency": bordcomputer.latency().as_dict(),
        "running": Trip.objects.filter(status=TripStatus.RUNNING).count(),
        "queued": Trip.objects.filter(status=TripStatus.QUEUED).count(),
    }


def per_minute(minutes: int = 60, now=None) -> list[dict]:
    """The last ``minutes`` minutes as a series (missing minutes are zero), oldest first."""
    now = (now or timezone.now()).replace(second=0, microsecond=0)
    since = now - timedelta(minutes=minutes - 1)
    rows = {r.minute: r for r in TachoMinute.objects.filter(minute__gte=since)}
    series = []
    for i in range(minutes):
        minute = since + timedelta(minutes=i)
        r = rows.get(minute)
        series.append(
            {
                "minute": minute.isoformat(),
                "trips": r.trips if r else 0,
                "tokens": (r.input_tokens + r.output_tokens + r.thinking_tokens) if r else 0,
                "cost_usd": str(r.cost_usd) if r else "0",
            }
        )
    return series
