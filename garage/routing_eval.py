"""Offline routing evaluation on recorded outcomes, through the real engine.

For every held-out prompt the Fahrer analyses the task, decides (Lernrouter base, then the
Kupplung's steps), drives the trip on the replayed Prüfstand and logs it; the recorded
correctness comes back as the user's thumbs up or down. Training reads the trip log: the
training folds' outcomes are written to it in bulk (one finished trip per prompt and gear,
judged by its recorded score), then the Fahrschule and the Lernrouter train on it.

This writes gears, roads and trips: it must run in a database of its own. The
``evaluate_routing`` command makes a temporary one unless told otherwise.
"""

import contextlib
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from fahrtenbuch import services as log
from fahrtenbuch.models import RoutingPolicy, SpendDay, SpendEntry, TrainingRun, Trip, TripStatus
from garage import fahrschule, getriebe, kickdown, lernrouter, routing_report
from garage import routerbench as rb
from garage.defaults import import_defaults
from garage.engine.strecke import Streckenanalyse
from garage.lernkupplung import LernFahrer
from garage.models import Budget, FitnessCriteria, Gear, Provider, ProviderKind, Road
from garage.motorblock import replay as replay_mod

PROVIDER = "routerbench"
# The router's curve: from "quality at any price" to "the cheapest gear it knows".
LAMBDAS = (
    0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3, 0.5,
    1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 1000.0,
)  # fmt: skip
BIG_LIMIT = Decimal("1000000")
CURVE_BLOCK = 100


class EvaluationError(Exception):
    pass


Progress = Callable[[str], None]


@contextlib.contextmanager
def replay_environment() -> Iterator[None]:
    """Every cloud gear simulated (so every call reaches the replay, never a provider)."""
    before = os.environ.get("CLUTCH_PRUEFSTAND")
    os.environ["CLUTCH_PRUEFSTAND"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CLUTCH_PRUEFSTAND", None)
        else:
            os.environ["CLUTCH_PRUEFSTAND"] = before


# --- the gearbox for a replay ---------------------------------------------------------------


@transaction.atomic
def prepare_gearbox(table: rb.Table, mapping: Sequence[rb.ModelGear]) -> None:
    """One simulated gear per model; the roads drive them; limits so high the zone stays
    green; every other gear and provider off."""
    if not Road.objects.exists():
        import_defaults(settings.CLUTCH_CONFIG_DIR)
    provider, _ = Provider.objects.update_or_create(
        name=PROVIDER,
        defaults={
            "kind": ProviderKind.OPENAI,
            "label": "RouterBench replay (simulated)",
            # Never set: the provider has no key, so its gears are always simulated.
            "api_key_env": ["CLUTCH_ROUTERBENCH_REPLAY_HAS_NO_KEY"],
            "enabled": True,
        },
    )
    mean_tokens = sum(len(r.prompt) for r in table.rows) / max(1, len(table.rows)) / 4 + 100
    gears = {}
    for m in mapping:
        price = Decimal(m.mean_cost_usd * 1_000_000 / mean_tokens).quantize(Decimal("0.0001"))
        gears[m.gear], _ = Gear.objects.update_or_create(
            name=m.gear,
            defaults={
                "label": f"{m.model} (replay)",
                "provider": provider,
                "model_id": m.model,
                "tier": m.tier,
                "input_price": price,
                "output_price": price,
                "context_window": 1_000_000,
                "max_output_tokens": 1024,
                "enabled": True,
            },
        )
    for road in Road.objects.select_related("default_gear"):
        tier = road.default_gear.tier
        nearest = min(mapping, key=lambda m: (abs(m.tier - tier), m.mean_cost_usd))
        Road.objects.filter(pk=road.pk).update(default_gear=gears[nearest.gear])
    Gear.objects.exclude(provider=provider).update(enabled=False)
    Provider.objects.exclude(pk=provider.pk).update(enabled=False)
    Budget.objects.update(daily_limit_usd=BIG_LIMIT, monthly_limit_usd=BIG_LIMIT * 10)


def reset_log(*, epsilon: float) -> None:
    """An empty trip log, no learned policy, and ε as given (0: no exploration)."""
    Trip.objects.all().delete()
    SpendEntry.objects.all().delete()
    SpendDay.objects.all().delete()
    RoutingPolicy.objects.all().delete()
    TrainingRun.objects.all().delete()
    FitnessCriteria.objects.update(
        epsilon_start=epsilon, epsilon_floor=min(epsilon, 0.02), window_days=3650
    )


def log_outcomes(rows: Sequence[rb.Row], mapping: Sequence[rb.ModelGear]) -> int:
    """The training prompts' recorded outcomes as finished, judged trips, one per gear."""
    analyser = Streckenanalyse(getriebe.load_roads())
    gears = {g.name: g for g in Gear.objects.filter(name__in=[m.gear for m in mapping])}
    trips = []
    for row in rows:
        strecke = analyser.analyse(row.prompt)
        for m in mapping:
            score = row.scores[m.model]
            trips.append(
                Trip(
                    task=row.prompt,
                    options={"replay": True},
                    road=strecke.road,
                    analysis=strecke.as_dict(),
                    gear=gears[m.gear],
                    gear_name=m.gear,
                    throttle=0.5,
                    pattern="single",
                    tempo=strecke.tempo,
                    zone="green",
                    simulated=True,
                    status=TripStatus.SUCCEEDED,
                    output=row.responses[m.model],
                    cost_usd=Decimal(repr(row.costs[m.model])).quantize(Decimal("1e-8")),
                    latency_ms=1,
                    feedback=None if score is None else (1 if score >= 1 else -1),
                )
            )
    Trip.objects.bulk_create(trips, batch_size=2000)
    return len(trips)


# --- routing held-out prompts through the engine ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Driven:
    prompt: str
    gear: str  # whose answer the trip returned
    model: str
    correct: bool | None
    cost_usd: float
    explored: bool
    learned: bool
    route: str = ""  # the gear, or the kickdown chain (see routing_report.route_name)
    kickdown: bool = False
    escalated: bool = False


def drive(rows: Sequence[rb.Row], replay: replay_mod.Replay, fahrer: LernFahrer) -> list[Driven]:
    """Each prompt through the Fahrer: analyse, decide, replayed execution, trip log; the
    recorded correctness is given back as the user's feedback."""
    driven = []
    with replay_mod.installed(replay):
        for row in rows:
            result = fahrer.fahren(row.prompt, pattern="single")
            trip = Trip.objects.get(pk=result.trip_id)
            if trip.status != TripStatus.SUCCEEDED:
                raise EvaluationError(
                    f"trip {trip.pk} ended {trip.status}: {trip.error or 'no reason'}"
                )
            model = replay.model_of[trip.gear_name]
            score = row.scores[model]
            correct = None if score is None else score >= 1
            if correct is not None:
                log.trip_feedback(trip, thumbs=1 if correct else -1)
            reasons = trip.reasons or []
            steps = [r.get("data") or {} for r in reasons if r.get("step") == "kickdown"]
            chain = next((d for d in steps if d.get("chain")), None)
            driven.append(
                Driven(
                    prompt=row.prompt,
                    gear=trip.gear_name,
                    model=model,
                    correct=correct,
                    cost_usd=float(trip.cost_usd),
                    explored=trip.explored,
                    learned=any(r.get("data", {}).get("source") == "lernrouter" for r in reasons),
                    route=routing_report.route_name(
                        (*chain["chain"], chain["top"]) if chain else (trip.gear_name,)
                    ),
                    kickdown=chain is not None,
                    escalated=any(d.get("escalated") for d in steps),
                )
            )
    return driven


def pure_choices(
    router: lernrouter.LernRouter,
    rows: Sequence[rb.Row],
    model_of: dict[str, str],
    lambdas: Sequence[float],
) -> dict[float, list[routing_report.Routed]]:
    """What the router does with each prompt at each λ, without the engine (for the curve):
    the same choice as the Lernkupplung's proposal (direct gear or kickdown chain), the
    kickdown's outcome replayed from the recorded answers."""
    reference = router.reference_cost_usd
    result: dict[float, list[routing_report.Routed]] = {lam: [] for lam in lambdas}
    chains: dict[tuple[str, float], kickdown.Chain | None] = {}
    for row in rows:
        estimates = router.estimates(row.prompt, 0.0)
        kind = kickdown.answer_kind(row.prompt)
        for lam in lambdas:
            best = min(  # the order LernRouter.estimates ranks by
                estimates,
                key=lambda e, lam=lam: (
                    lam * e.cost_usd / reference - e.p_success,
                    e.cost_usd,
                    e.gear,
                ),
            )
            if (kind, lam) not in chains:
                chains[kind, lam] = router.schaltplan.choose(kind, lam, reference, router.gears)[0]
            chain = chains[kind, lam]
            if chain is not None:
                result[lam].append(replay_kickdown(row, chain, model_of, kind))
            else:
                model = model_of[best.gear]
                result[lam].append(routing_report.Routed(best.gear, model, row.costs[model]))
    return result


def replay_kickdown(
    row: rb.Row, chain: kickdown.Chain, model_of: dict[str, str], kind: str
) -> routing_report.Routed:
    """A kickdown on one recorded prompt, decided as the Fahrt decides it."""
    answers: list[tuple[str, str | None]] = []
    cost = 0.0
    for number, gear in enumerate(chain.cheap):
        model = model_of[gear]
        cost += row.costs[model]
        answers.append((gear, kickdown.normalise(row.responses[model], kind)))
        decided = kickdown.verdict(answers, complete=number == len(chain.cheap) - 1)
        if decided is not None:
            break
    answered_by = chain.cheap[0] if decided.accept else chain.top
    if not decided.accept:
        cost += row.costs[model_of[chain.top]]
    return routing_report.Routed(
        routing_report.route_name(chain.gears), model_of[answered_by], cost, kickdown=True
    )


# --- the whole evaluation ------------------------------------------------------------------


@dataclass
class EvalOptions:
    kind: str = "logreg"
    folds: int = 5
    seed: int = 0
    lam: float | None = None  # None: the green zone's λ
    compare: tuple[str, ...] = lernrouter.KINDS
    curve_trips: int | None = None  # None: every prompt once; 0: no learning curve
    curve_block: int = CURVE_BLOCK


def evaluate(
    table: rb.Table,
    *,
    test: rb.Table | None = None,
    mapping: Sequence[rb.ModelGear] | None = None,
    options: EvalOptions | None = None,
    progress: Progress | None = None,
) -> dict:
    """Cross-validated (or train/test) routing report; see ``evaluate_routing``."""
    options = options or EvalOptions()
    say = progress or (lambda _: None)
    mapping = tuple(mapping or rb.map_models(table))
    if test is not None and set(test.models) != set(table.models):
        raise EvaluationError("the train and test tables name different models")
    model_of = {m.gear: m.model for m in mapping}
    lam = lernrouter.zone_lambda("green") if options.lam is None else options.lam
    lambdas = tuple(sorted({*LAMBDAS, lam}))
    full = table if test is None else rb.Table(table.models, table.rows + test.rows)
    replay = replay_mod.Replay(full, mapping)
    started = time.perf_counter()

    if test is None:
        splits = rb.folds(table, options.folds, seed=options.seed)
        plan = [
            ([i for j, f in enumerate(splits) if j != k for i in f], fold)
            for k, fold in enumerate(splits)
        ]
        rows = table.rows
    else:
        plan = [
            (list(range(len(table.rows))), [len(table.rows) + i for i in range(len(test.rows))])
        ]
        rows = full.rows

    evaluated: list[rb.Row] = []
    engine: list[Driven] = []
    pure: dict[str, dict[float, list[routing_report.Routed]]] = {
        k: {x: [] for x in lambdas} for k in options.compare
    }
    with replay_environment():
        prepare_gearbox(table, mapping)
        for number, (train_idx, test_idx) in enumerate(plan, start=1):
            reset_log(epsilon=0.0)
            trips = log_outcomes([rows[i] for i in train_idx], mapping)
            say(f"fold {number}/{len(plan)}: {trips} training trips logged; training")
            routers = dict.fromkeys(options.compare)
            fahrschule.trainieren()
            samples = lernrouter.samples_from_log()
            for kind in {*options.compare, options.kind}:
                try:
                    routers[kind] = lernrouter.fit(samples, kind=kind)
                except lernrouter.NotEnoughData as exc:
                    raise EvaluationError(
                        f"fold {number}: {exc} ({len(train_idx)} training prompts); "
                        "use fewer folds or more data"
                    ) from None
            held_out = [rows[i] for i in test_idx]
            for kind in options.compare:
                for x, chosen in pure_choices(routers[kind], held_out, model_of, lambdas).items():
                    pure[kind][x].extend(chosen)
            say(f"fold {number}/{len(plan)}: driving {len(held_out)} held-out prompts")
            fahrer = LernFahrer(
                router=routers[options.kind], use_saved=False, seed=options.seed, lam=lam
            )
            engine.extend(drive(held_out, replay, fahrer))
            evaluated.extend(held_out)
        curve = None
        if options.curve_trips != 0:
            say("learning curve: ε-greedy over trips, from an empty trip log")
            curve = learning_curve(
                full if test is None else test,
                replay,
                mapping,
                kind=options.kind,
                lam=lam,
                trips=options.curve_trips,
                block=options.curve_block,
                seed=options.seed,
                progress=say,
            )

    return routing_report.build(
        routing_report.Run(
            table=table,
            test=test,
            mapping=mapping,
            kind=options.kind,
            folds=options.folds if test is None else 1,
            seed=options.seed,
            lam=lam,
            evaluated=evaluated,
            engine=engine,
            pure=pure,
            learning_curve=curve,
            seconds=time.perf_counter() - started,
        )
    )


def learning_curve(
    table: rb.Table,
    replay: replay_mod.Replay,
    mapping: Sequence[rb.ModelGear],
    *,
    kind: str,
    lam: float,
    trips: int | None,
    block: int,
    seed: int,
    progress: Progress,
) -> dict:
    """ε-greedy from an empty log: the road table drives until the Lernrouter knows two
    gears; after every ``block`` trips the Fahrschule and the Lernrouter retrain on the log."""
    reset_log(epsilon=0.10)
    criteria = FitnessCriteria.objects.first() or FitnessCriteria()
    rows = list(table.rows)
    random.Random(seed).shuffle(rows)
    rows = rows[: trips or len(rows)]
    router = None
    blocks = []
    for start in range(0, len(rows), block):
        chunk = rows[start : start + block]
        fahrer = LernFahrer(router=router, use_saved=False, seed=seed + start, lam=lam)
        epsilon = getriebe.current_epsilon(FitnessCriteria.objects.first() or criteria)
        driven = drive(chunk, replay, fahrer)
        point = routing_report.point_of(driven)
        blocks.append(
            {
                "trips": start + len(chunk),
                "epsilon": round(epsilon, 4),
                "router": router is not None,
                "accuracy": round(point.accuracy, 4),
                "mean_cost_usd": round(point.mean_cost_usd, 8),
                "explored": sum(d.explored for d in driven),
            }
        )
        fahrschule.trainieren()
        try:
            router = lernrouter.fit(lernrouter.samples_from_log(), kind=kind)
        except lernrouter.NotEnoughData:
            router = None
        progress(
            f"learning curve: {start + len(chunk)} trips, block accuracy {point.accuracy:.3f}, "
            f"mean cost {point.mean_cost_usd:.6f}, router {'on' if blocks[-1]['router'] else 'off'}"
        )
    return {"block": block, "lambda": lam, "blocks": blocks}
