"""Fahrschule: fitness per (road, gear) from the trip log, and the routing policy it writes.

Fitness = w_e·efficiency + w_q·quality + w_s·speed + w_r·reliability over a sliding window,
each trip weighted by daily_decay^(age in days). Quality counts the user's feedback: a thumbs
down makes a trip worthless, a thumbs up makes it count fully. ε decays on every run.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from statistics import mean

from django.db import transaction
from django.utils import timezone

from fahrtenbuch.models import RoutingPolicy, TrainingRun, Trip, TripStatus
from garage.getriebe import current_epsilon
from garage.models import FitnessCriteria, Gear, Road

JUDGED = (TripStatus.SUCCEEDED, TripStatus.FAILED)


@dataclass
class Score:
    road: str
    gear: str
    samples: float  # decayed weight
    trips: int
    efficiency: float
    quality: float
    speed: float
    reliability: float
    fitness: float
    throttle: float

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _trip_quality(status: str, retries: int, feedback: int | None) -> float:
    if feedback == -1:
        return 0.0
    if feedback == 1:
        return 1.0
    if status != TripStatus.SUCCEEDED:
        return 0.0
    return max(0.0, 1.0 - 0.1 * min(retries, 3))


def fitness_table(criteria: FitnessCriteria, now=None) -> list[Score]:
    """Scores for every (road, gear) pair with trips in the window."""
    now = now or timezone.now()
    since = now - timedelta(days=criteria.window_days)
    rows = (
        Trip.objects.filter(created_at__gte=since, status__in=JUDGED, gear__isnull=False)
        .exclude(road="")
        .values_list(
            "road",
            "gear__name",
            "status",
            "retries",
            "failovers",
            "feedback",
            "cost_usd",
            "latency_ms",
            "throttle",
            "created_at",
        )
    )
    ref_cost = float(criteria.reference_cost_usd)
    ref_latency = float(criteria.reference_latency_ms)
    acc: dict[tuple[str, str], list] = defaultdict(list)
    for (
        road,
        gear,
        status,
        retries,
        failovers,
        feedback,
        cost,
        latency,
        throttle,
        created,
    ) in rows.iterator():
        age_days = max(0.0, (now - created).total_seconds() / 86400)
        weight = criteria.daily_decay**age_days
        succeeded = status == TripStatus.SUCCEEDED
        acc[(road, gear)].append(
            (
                weight,
                ref_cost / (ref_cost + float(cost)),
                _trip_quality(status, retries, feedback),
                ref_latency / (ref_latency + float(latency or ref_latency * 3)),
                (1.0 if not failovers else 0.5) if succeeded else 0.0,
                throttle if throttle is not None else 0.5,
                succeeded,
            )
        )
    scores = []
    for (road, gear), items in acc.items():
        total = sum(i[0] for i in items)

        def avg(idx: int, items=items, total=total) -> float:
            return sum(i[0] * i[idx] for i in items) / total

        e, q, s, r = avg(1), avg(2), avg(3), avg(4)
        fitness = (
            criteria.weight_efficiency * e
            + criteria.weight_quality * q
            + criteria.weight_speed * s
            + criteria.weight_reliability * r
        )
        good = [i[5] for i in items if i[6]]
        scores.append(
            Score(
                road,
                gear,
                total,
                len(items),
                e,
                q,
                s,
                r,
                fitness,
                round(mean(good), 2) if good else 0.5,
            )
        )
    return sorted(scores, key=lambda sc: (sc.road, -sc.fitness))


@transaction.atomic
def trainieren(*, user=None, now=None) -> dict:
    """Score the trip log, write the routing policy per road, decay ε, record the run."""
    criteria = FitnessCriteria.objects.first() or FitnessCriteria()
    scores = fitness_table(criteria, now)
    eps_before = current_epsilon(criteria)
    eps_after = max(criteria.epsilon_floor, eps_before * criteria.epsilon_decay)
    roads = {r.slug: r for r in Road.objects.select_related("default_gear")}
    gears = {g.name: g for g in Gear.objects.filter(enabled=True)}
    by_road: dict[str, list[Score]] = defaultdict(list)
    for score in scores:
        by_road[score.road].append(score)
    run = TrainingRun.objects.create(
        triggered_by=user,
        trips_considered=sum(s.trips for s in scores),
        epsilon_before=eps_before,
        epsilon_after=eps_after,
    )
    changed, decisions = 0, {}
    for slug, road in roads.items():
        candidates = [
            s for s in by_road.get(slug, []) if s.gear in gears and s.trips >= criteria.min_samples
        ]
        if not candidates:
            decisions[slug] = {
                "kept": "road table",
                "why": f"no gear with {criteria.min_samples} trips yet",
            }
            continue
        best = max(candidates, key=lambda s: s.fitness)
        default = next((s for s in candidates if s.gear == road.default_gear.name), None)
        if (
            default is not None
            and best.gear != default.gear
            and best.fitness < default.fitness + criteria.switch_margin
        ):
            best = default  # not clearly better: stay with the road's gear
        policy = RoutingPolicy.objects.filter(road=road).first()
        new = (best.gear, best.throttle, road.pattern)
        old = (policy.gear.name, policy.throttle, policy.pattern) if policy else None
        if old != new:
            changed += 1
        RoutingPolicy.objects.update_or_create(
            road=road,
            defaults={
                "gear": gears[best.gear],
                "throttle": best.throttle,
                "pattern": road.pattern,
                "samples": best.trips,
                "fitness": best.fitness,
                "training_run": run,
            },
        )
        decisions[slug] = {
            "gear": best.gear,
            "throttle": best.throttle,
            "fitness": round(best.fitness, 4),
            "samples": best.trips,
            "differs_from_road": best.gear != road.default_gear.name,
        }
    run.policies_changed = changed
    run.report = {"scores": [s.as_dict() for s in scores], "policy": decisions}
    run.save(update_fields=["policies_changed", "report"])
    from garage import lernrouter  # scikit-learn is imported only when training

    learned = lernrouter.trainieren(training_run=run)
    return {
        "training_run": run.pk,
        "trips_considered": run.trips_considered,
        "policies_changed": changed,
        "epsilon_before": eps_before,
        "epsilon_after": eps_after,
        "policy": decisions,
        "lernrouter": learned,
    }
