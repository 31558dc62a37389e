"""Reads of the car's tables for pages and the API."""

import math
from dataclasses import dataclass

from garage.models import FitnessCriteria, Gear, Road


@dataclass(frozen=True)
class GearRow:
    gear: Gear
    available: bool
    why_not: str


def gearbox_overview() -> list[GearRow]:
    """Every gear with whether it can drive now and, if not, what to do about it."""
    rows = []
    for gear in Gear.objects.select_related("provider").order_by("tier", "name"):
        provider = gear.provider
        if not gear.enabled:
            why = "gear disabled in the admin"
        elif not provider.enabled:
            why = f"provider {provider.name} disabled in the admin"
        elif not provider.has_credentials:
            why = f"no key: set {' or '.join(provider.api_key_env)}"
        else:
            why = ""
        rows.append(GearRow(gear=gear, available=not why, why_not=why))
    return rows


def road_table() -> list[Road]:
    return list(Road.objects.select_related("default_gear").order_by("order", "slug"))


# --- the cockpit -----------------------------------------------------------------------

GAUGE_CX, GAUGE_CY, GAUGE_R = 110, 110, 90
ZONE_COLOURS = ("green", "yellow", "orange", "red")


@dataclass(frozen=True)
class GearStatus:
    gear: Gear
    state: str  # "available" | "simulated" | "unavailable"
    why_not: str  # what keeps it from driving, and how to fix that
    breaker: str  # closed | open | half_open
    breaker_until: object  # datetime the breaker stays open until, or None
    breaker_error: str
    p50_ms: int | None
    p95_ms: int | None
    success_rate: float | None  # over the last calls, None without calls
    calls: int


def _configure_hint(provider) -> str:
    names = " or ".join(provider.api_key_env)
    return f"no key: set {names} (environment or data/secrets.env)"


def gearbox_status(*, last_calls: int = 200) -> list[GearStatus]:
    """Every gear as the engine sees it now: may it drive, why not and how to fix that,
    its breaker, and latency and success rate over its last calls."""
    from fahrtenbuch.models import CircuitBreaker, Leg, LegStatus
    from garage import bordcomputer, getriebe

    routable, by_name, unavailable = getriebe.load_gearbox()
    specs = {g.name: g for g in (*routable, *by_name)}
    breakers = {b.gear_id: b for b in CircuitBreaker.objects.all()}
    open_now = bordcomputer.open_breakers()
    rows = []
    for gear in Gear.objects.select_related("provider").order_by("tier", "name"):
        spec = specs.get(gear.name)
        provider = gear.provider
        if not gear.enabled:
            state, why = "unavailable", "gear disabled in the admin"
        elif gear.name in unavailable:
            state, why = "unavailable", unavailable[gear.name]
        elif spec is not None and spec.simulated and provider.needs_credentials:
            state = "simulated"
            why = _configure_hint(provider) + "; the Prüfstand stands in meanwhile"
        elif gear.name in open_now:
            state, why = "unavailable", "circuit breaker open"
        else:
            state, why = ("simulated" if spec is not None and spec.simulated else "available"), ""
        # Legs of one gear, newest first: the gear_id index keeps this to ``last_calls`` rows.
        calls = list(
            Leg.objects.filter(gear_id=gear.pk, status__in=(LegStatus.SUCCEEDED, LegStatus.FAILED))
            .order_by("-id")
            .values_list("status", "latency_ms")[:last_calls]
        )
        latencies = [ms for status, ms in calls if status == LegStatus.SUCCEEDED and ms is not None]
        succeeded = sum(1 for status, _ in calls if status == LegStatus.SUCCEEDED)
        breaker = breakers.get(gear.pk)
        rows.append(
            GearStatus(
                gear=gear,
                state=state,
                why_not=why,
                breaker=breaker.state if breaker else "closed",
                breaker_until=breaker.open_until if breaker else None,
                breaker_error=breaker.last_error if breaker else "",
                p50_ms=bordcomputer.percentile(latencies, 50),
                p95_ms=bordcomputer.percentile(latencies, 95),
                success_rate=succeeded / len(calls) if calls else None,
                calls=len(calls),
            )
        )
    return rows


def _gauge_point(fraction: float, radius: float = GAUGE_R) -> tuple[float, float]:
    angle = math.pi * (1 - fraction)
    return (
        round(GAUGE_CX + radius * math.cos(angle), 2),
        round(GAUGE_CY - radius * math.sin(angle), 2),
    )


def _arc(start: float, end: float) -> str:
    (x1, y1), (x2, y2) = _gauge_point(start), _gauge_point(end)
    return f"M {x1} {y1} A {GAUGE_R} {GAUGE_R} 0 0 1 {x2} {y2}"


def fuel_gauge(now=None) -> dict | None:
    """The Tankuhr as a half-circle gauge: one arc per zone, a needle at the usage, and the
    day and month spend against their limits. None before the defaults are imported."""
    from garage import tankuhr
    from garage.models import Budget

    try:
        fuel = tankuhr.fuel(now)
    except Budget.DoesNotExist:
        return None
    rules = fuel.rules
    bounds = [0.0, float(rules.yellow_from), float(rules.orange_from), float(rules.red_from), 1.0]
    usage = float(fuel.usage)
    needle = min(max(usage, 0.0), 1.0)
    tip = _gauge_point(needle, GAUGE_R - 22)
    return {
        "zone": fuel.zone,
        "usage": usage,
        "tier_cap": fuel.tier_cap,
        "arcs": [
            {"zone": zone, "d": _arc(bounds[i], bounds[i + 1]), "from": bounds[i]}
            for i, zone in enumerate(ZONE_COLOURS)
        ],
        "needle": {"x": tip[0], "y": tip[1]},
        "cx": GAUGE_CX,
        "cy": GAUGE_CY,
        "day": {
            "spent": fuel.day_spent,
            "limit": fuel.day_limit,
            "share": float(fuel.day_spent / fuel.day_limit),
        },
        "month": {
            "spent": fuel.month_spent,
            "limit": fuel.month_limit,
            "share": float(fuel.month_spent / fuel.month_limit),
        },
        "thresholds": {zone: bounds[i] for i, zone in enumerate(ZONE_COLOURS)},
    }


def tacho_overview(now=None) -> dict:
    """Trips, tokens and spend in the last minute and hour, latency percentiles, running
    and queued counts, and trips per minute over the last hour for a small bar chart."""
    from garage import tacho

    summary = tacho.summary(now)
    series = tacho.per_minute(60, now)
    peak = max((m["trips"] for m in series), default=0) or 1
    bars = []
    for i, m in enumerate(series):
        height = round(38 * m["trips"] / peak, 1)
        bars.append({"x": i * 5, "y": 40 - height, "h": height, "trips": m["trips"]})
    return {**summary, "bars": bars, "peak": peak if any(m["trips"] for m in series) else 0}


def road_routes() -> list[dict]:
    """Each road with the gear it drives on now: the learned policy once it has enough
    samples, else the road table."""
    from fahrtenbuch.models import RoutingPolicy

    criteria = FitnessCriteria.objects.first() or FitnessCriteria()
    policies = {
        p.road_id: p for p in RoutingPolicy.objects.select_related("gear").order_by("road_id")
    }
    rows = []
    for road in road_table():
        policy = policies.get(road.pk)
        learned = policy is not None and policy.samples >= criteria.min_samples
        rows.append(
            {
                "road": road,
                "policy": policy,
                "learned": learned,
                "gear": policy.gear.name if learned else road.default_gear.name,
                "throttle": policy.throttle if learned else road.throttle,
                "differs": bool(policy and policy.gear_id != road.default_gear_id),
            }
        )
    return rows


# --- the Fahrschule --------------------------------------------------------------------


def fahrschule_overview(*, runs: int = 20) -> dict:
    """Fitness per road × gear (from the last training run, or live before the first one),
    the policy beside the road table, ε over time and the recent training runs."""
    from fahrtenbuch.models import TrainingRun
    from garage import fahrschule, getriebe

    criteria = FitnessCriteria.objects.first() or FitnessCriteria()
    last = TrainingRun.objects.order_by("-id").first()
    if last is not None and "scores" in last.report:
        scores, source = last.report["scores"], f"training run {last.pk}"
    else:
        scores, source = (
            [s.as_dict() for s in fahrschule.fitness_table(criteria)],
            "the trip log now",
        )
    roads = [r.slug for r in road_table()]
    tiers = dict(Gear.objects.values_list("name", "tier"))
    gears = sorted({s["gear"] for s in scores}, key=lambda g: (tiers.get(g, 9), g))
    cells = {(s["road"], s["gear"]): s for s in scores}
    matrix = [
        {"road": road, "cells": [cells.get((road, gear)) for gear in gears]}
        for road in roads
        if any((road, gear) in cells for gear in gears)
    ]
    history = list(
        TrainingRun.objects.order_by("-id").values_list("id", "created_at", "epsilon_after")[:200]
    )[::-1]
    return {
        "criteria": criteria,
        "epsilon": getriebe.current_epsilon(criteria),
        "fitness_source": source,
        "gears": gears,
        "matrix": matrix,
        "chart": {
            "roads": [row["road"] for row in matrix],
            "gears": gears,
            "fitness": [
                [round(c["fitness"], 3) if c else None for c in row["cells"]] for row in matrix
            ],
        },
        "chart_height": max(12, 4 + len(matrix) * max(len(gears), 2) * 0.9),
        "epsilon_chart": {
            "labels": [f"#{pk}" for pk, _, _ in history],
            "values": [round(eps, 4) for _, _, eps in history],
            "start": criteria.epsilon_start,
            "floor": criteria.epsilon_floor,
        },
        "routes": road_routes(),
        "runs": list(TrainingRun.objects.select_related("triggered_by").order_by("-id")[:runs]),
        "lernrouter": lernrouter_state(last),
    }


def lernrouter_state(last_run) -> dict | None:
    """What the last training made of the learned router: per gear how many trips, how often
    they succeeded and what they cost — or why it is not trained yet."""
    report = (last_run.report or {}).get("lernrouter") if last_run is not None else None
    if not report:
        return None
    gears = [{"gear": name, **figures} for name, figures in (report.get("gears") or {}).items()]
    return {**report, "gear_rows": sorted(gears, key=lambda g: g["gear"])}
