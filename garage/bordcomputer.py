"""Bordcomputer: a circuit breaker per gear, shared by every process through the database,
latency percentiles from the trip log, and anomaly flags.

A breaker opens after N consecutive failures or M failures within an hour, stays open for a
cooldown, then lets exactly one probe through (half-open): success closes it, failure opens
it again. Thresholds come from settings (CLUTCH_BREAKER_*), defaults 3, 5 and 300 s.
"""

import math
import os
import time
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from fahrtenbuch.models import BreakerState, CircuitBreaker, Leg, LegStatus
from garage.models import Gear

HOUR_S = 3600


@dataclass(frozen=True)
class BreakerRules:
    consecutive: int = 3
    per_hour: int = 5
    cooldown_s: int = 300
    probe_timeout_s: int = 600  # a probe that never reported back frees the slot after this

    @classmethod
    def from_env(cls) -> "BreakerRules":
        return cls(
            consecutive=int(os.environ.get("CLUTCH_BREAKER_CONSECUTIVE", cls.consecutive)),
            per_hour=int(os.environ.get("CLUTCH_BREAKER_PER_HOUR", cls.per_hour)),
            cooldown_s=int(os.environ.get("CLUTCH_BREAKER_COOLDOWN_S", cls.cooldown_s)),
        )


def rules() -> BreakerRules:
    return BreakerRules.from_env()


def open_breakers(now=None) -> frozenset[str]:
    """Gears that may not take a new call now: open and cooling down, or half-open with
    its one probe already under way."""
    now = now or timezone.now()
    probe_fresh = now - timedelta(seconds=rules().probe_timeout_s)
    blocked = CircuitBreaker.objects.filter(
        Q(state=BreakerState.OPEN, open_until__gt=now)
        | Q(state=BreakerState.HALF_OPEN, probe_started_at__gt=probe_fresh)
    ).values_list("gear__name", flat=True)
    return frozenset(blocked)


def _breaker(gear: Gear) -> CircuitBreaker:
    breaker, _ = CircuitBreaker.objects.select_for_update().get_or_create(gear=gear)
    return breaker


def _healthy(gear: Gear) -> bool:
    """No breaker row yet, or closed without failures: the common case, one cheap read."""
    row = (
        CircuitBreaker.objects.filter(gear=gear)
        .values_list("state", "consecutive_failures")
        .first()
    )
    return row is None or row == (BreakerState.CLOSED, 0)


def acquire(gear: Gear, now=None) -> bool:
    """May a call go to ``gear`` now? Claims the single probe slot of a cooled-down breaker."""
    now = now or timezone.now()
    if _healthy(gear):
        return True
    with transaction.atomic():
        breaker = _breaker(gear)
        if breaker.state == BreakerState.CLOSED:
            return True
        probe_stale = now - timedelta(seconds=rules().probe_timeout_s)
        if breaker.state == BreakerState.OPEN and breaker.open_until and breaker.open_until > now:
            return False
        if (
            breaker.state == BreakerState.HALF_OPEN
            and breaker.probe_started_at
            and breaker.probe_started_at > probe_stale
        ):
            return False
        breaker.state = BreakerState.HALF_OPEN
        breaker.probe_started_at = now
        breaker.save(update_fields=["state", "probe_started_at", "updated_at"])
        return True


def acquire_checked(gear: Gear, now=None) -> tuple[bool, bool]:
    """(may call now, breaker plainly healthy) in one look."""
    if _healthy(gear):
        return True, True
    return acquire(gear, now), False


def record_success(gear: Gear) -> None:
    if _healthy(gear):
        return
    with transaction.atomic():
        breaker = _breaker(gear)
        if breaker.state == BreakerState.CLOSED and breaker.consecutive_failures == 0:
            return
        breaker.state = BreakerState.CLOSED
        breaker.consecutive_failures = 0
        breaker.probe_started_at = None
        breaker.open_until = None
        breaker.save(
            update_fields=[
                "state",
                "consecutive_failures",
                "probe_started_at",
                "open_until",
                "updated_at",
            ]
        )


def record_failure(gear: Gear, error: str, *, force_open: bool = False, now=None) -> str:
    """Count a failure; returns the breaker's state afterwards."""
    now = now or timezone.now()
    r = rules()
    with transaction.atomic():
        breaker = _breaker(gear)
        stamp = now.timestamp()
        recent = [t for t in breaker.recent_failures if stamp - t < HOUR_S] + [stamp]
        breaker.recent_failures = recent[-max(r.per_hour * 4, 20) :]
        breaker.consecutive_failures += 1
        breaker.last_error = error[:500]
        trips = (
            force_open
            or breaker.state == BreakerState.HALF_OPEN
            or breaker.consecutive_failures >= r.consecutive
            or len(recent) >= r.per_hour
        )
        if trips:
            breaker.state = BreakerState.OPEN
            breaker.opened_at = now
            breaker.open_until = now + timedelta(seconds=r.cooldown_s)
            breaker.probe_started_at = None
        breaker.save()
        return breaker.state


def percentile(values: list[int], q: float) -> int | None:
    """Nearest-rank percentile of ``values`` (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Latency:
    samples: int
    p50_ms: int | None
    p95_ms: int | None
    ttft_p50_ms: int | None
    ttft_p95_ms: int | None

    def as_dict(self) -> dict:
        return {
            "samples": self.samples,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "ttft_p50_ms": self.ttft_p50_ms,
            "ttft_p95_ms": self.ttft_p95_ms,
        }


def latency(gear_id: int | None = None, *, last: int = 500) -> Latency:
    """p50/p95 of total time and time to first token over the last ``last`` succeeded legs."""
    legs = Leg.objects.filter(status=LegStatus.SUCCEEDED, latency_ms__isnull=False)
    if gear_id is not None:
        legs = legs.filter(gear_id=gear_id)
    rows = list(legs.order_by("-id").values_list("latency_ms", "ttft_ms")[:last])
    totals = [r[0] for r in rows]
    ttfts = [r[1] for r in rows if r[1] is not None]
    return Latency(
        len(rows),
        percentile(totals, 50),
        percentile(totals, 95),
        percentile(ttfts, 50),
        percentile(ttfts, 95),
    )


@dataclass(frozen=True)
class Baseline:
    """What a road's trips on a gear usually look like: the yardstick for anomaly flags."""

    trips: int
    mean_tokens: float
    latencies: int
    mean_latency: float
    std_latency: float


# (gear id, road) → (monotonic time read, baseline). The baseline moves slowly; reading the
# last 200 trips for every finished trip cost the worker more than the rest of a short trip.
_baselines: dict[tuple[int | None, str], tuple[float, Baseline]] = {}


def _baseline_ttl_s() -> float:
    return float(os.environ.get("CLUTCH_ANOMALY_BASELINE_S", "10"))


def baseline(*, gear_id: int | None, road: str, last: int = 200) -> Baseline:
    from fahrtenbuch.models import Trip, TripStatus

    key, now = (gear_id, road), time.monotonic()
    cached = _baselines.get(key)
    if cached and now - cached[0] < _baseline_ttl_s():
        return cached[1]
    history = list(
        Trip.objects.filter(gear_id=gear_id, road=road, status=TripStatus.SUCCEEDED)
        .order_by("-id")
        .values_list("output_tokens", "latency_ms")[:last]
    )
    tokens = [h[0] for h in history]
    lat = [h[1] for h in history if h[1] is not None]
    mean_lat = sum(lat) / len(lat) if lat else 0.0
    result = Baseline(
        trips=len(history),
        mean_tokens=sum(tokens) / len(tokens) if tokens else 0.0,
        latencies=len(lat),
        mean_latency=mean_lat,
        std_latency=math.sqrt(sum((x - mean_lat) ** 2 for x in lat) / len(lat)) if lat else 0.0,
    )
    if len(_baselines) > 1000:
        _baselines.clear()
    _baselines[key] = (now, result)
    return result


def anomalies(
    *, gear_id: int | None, road: str, output_tokens: int, latency_ms: int | None
) -> list[dict]:
    """Token explosion (> 2× the road/gear mean) and latency outliers (z-score > 2.5),
    against the last 200 succeeded trips of that road on that gear (re-read every
    CLUTCH_ANOMALY_BASELINE_S seconds, 10 by default)."""
    base = baseline(gear_id=gear_id, road=road)
    flags: list[dict] = []
    if base.trips < 10:
        return flags
    if base.mean_tokens and output_tokens > 2 * base.mean_tokens:
        flags.append(
            {
                "kind": "token_explosion",
                "output_tokens": output_tokens,
                "mean": round(base.mean_tokens, 1),
            }
        )
    if latency_ms is not None and base.latencies >= 10 and base.std_latency > 0:
        z = (latency_ms - base.mean_latency) / base.std_latency
        if z > 2.5:
            flags.append({"kind": "latency_outlier", "latency_ms": latency_ms, "z": round(z, 2)})
    return flags


def status() -> list[dict]:
    """Every breaker that is not plainly closed, for the cockpit and the API."""
    now = timezone.now()
    rows = []
    for b in CircuitBreaker.objects.select_related("gear").order_by("gear__tier", "gear__name"):
        rows.append(
            {
                "gear": b.gear.name,
                "state": b.state,
                "consecutive_failures": b.consecutive_failures,
                "failures_last_hour": len(
                    [t for t in b.recent_failures if now.timestamp() - t < HOUR_S]
                ),
                "open_until": b.open_until.isoformat() if b.open_until else None,
                "last_error": b.last_error,
            }
        )
    return rows
