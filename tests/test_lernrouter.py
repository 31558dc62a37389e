"""The Lernrouter: it learns from the trip log which gear a prompt needs, and pays by zone."""

import csv
import json
import random
import time
from decimal import Decimal

import pytest
from django.conf import settings

from fahrtenbuch.models import Trip, TripStatus
from garage import lernrouter, routing_eval
from garage import routerbench as rb
from garage.engine.kupplung import Lage, Wunsch
from garage.engine.strecke import roads_from_config
from garage.engine.tankuhr import Fuel
from garage.engine.types import GearSpec, Strecke
from garage.lernkupplung import LernFahrer, kuppeln_gelernt
from garage.lernrouter import Sample
from garage.motorblock.replay import Replay

PLACES = [
    "river", "mountain", "city", "garden", "ocean", "forest", "winter", "harbour", "meadow",
    "desert", "island", "village", "bridge", "lantern", "orchard", "valley", "glacier", "canyon",
    "prairie", "lagoon",
]  # fmt: skip
COLOURS = [
    "red", "green", "quiet", "old", "bright", "dark", "cold", "warm", "small", "vast", "hidden",
    "golden", "silver", "misty", "windy", "sunny",
]  # fmt: skip
# Enough prompts for the regularised regression to be sure of the easy ones.
NOUNS = [f"{colour} {place}" for colour in COLOURS for place in PLACES]
CHEAP, DEAR = 0.0001, 0.005


def poem(noun: str) -> str:
    return f"Write a short cheerful poem about the {noun} at dawn."


def proof(noun: str) -> str:
    return f"Prove the convergence theorem for the {noun} integral with a rigorous lemma."


def synthetic_samples() -> list[Sample]:
    """cheap gets poems right and proofs wrong; dear gets both right."""
    samples = []
    for noun in NOUNS:
        samples += [
            Sample(poem(noun), "cheap", 1.0, CHEAP),
            Sample(poem(noun), "dear", 1.0, DEAR),
            Sample(proof(noun), "cheap", 0.0, CHEAP),
            Sample(proof(noun), "dear", 1.0, DEAR),
        ]
    return samples


@pytest.mark.parametrize("kind", lernrouter.KINDS)
def test_it_sends_easy_prompts_cheap_and_hard_ones_dear(kind):
    router = lernrouter.fit(synthetic_samples(), kind=kind)
    lam = lernrouter.zone_lambda("green")
    assert router.choose(poem("volcano"), lam) == "cheap"
    assert router.choose(proof("volcano"), lam) == "dear"
    estimates = {e.gear: e for e in router.estimates(proof("volcano"), lam)}
    assert estimates["dear"].p_success > 0.7 > estimates["cheap"].p_success
    assert estimates["dear"].cost_usd == pytest.approx(DEAR)


def test_a_large_lambda_saves_even_on_hard_prompts():
    router = lernrouter.fit(synthetic_samples())
    assert router.choose(proof("volcano"), 5.0) == "cheap"
    assert router.choose(proof("volcano"), 0.0) == "dear"


def test_lambda_grows_as_the_tank_empties():
    zones = ("green", "yellow", "orange", "red")
    values = [lernrouter.zone_lambda(z) for z in zones]
    assert values == sorted(values) and len(set(values)) == 4
    assert lernrouter.zone_lambda("unknown") == lernrouter.zone_lambda("green")


def test_gears_with_too_few_trips_are_left_out_and_two_are_needed():
    samples = [*synthetic_samples(), Sample(poem("x"), "rare", 1.0, 0.0)]
    router = lernrouter.fit(samples)
    assert router.gears == ("cheap", "dear")
    assert router.skipped_gears == {"rare": 1}
    with pytest.raises(lernrouter.NotEnoughData):
        lernrouter.fit([s for s in samples if s.gear == "cheap"])


def test_only_allowed_gears_are_considered():
    router = lernrouter.fit(synthetic_samples())
    assert router.choose(proof("volcano"), 0.0, allowed={"cheap"}) == "cheap"
    assert router.choose(proof("volcano"), 0.0, allowed=set()) is None


def test_saved_router_survives_a_restart(tmp_path):
    router = lernrouter.fit(synthetic_samples())
    path = lernrouter.save(router, tmp_path / "router.joblib")
    lernrouter._cache.clear()  # a new process
    loaded = lernrouter.load(path)
    assert loaded is not None and loaded.gears == router.gears
    assert loaded.choose(proof("volcano"), 0.07) == "dear"
    assert lernrouter.load(path) is loaded  # unchanged file: not read again
    assert lernrouter.load(tmp_path / "missing.joblib") is None


def test_a_damaged_router_file_is_ignored(tmp_path):
    path = tmp_path / "router.joblib"
    path.write_bytes(b"not a pickle")
    lernrouter._cache.clear()
    assert lernrouter.load(path) is None


def test_a_decision_takes_well_under_five_milliseconds():
    router = lernrouter.fit(synthetic_samples())
    prompt = proof("volcano") * 20
    router.choose(prompt, 0.07)
    timings = []
    for _ in range(50):
        start = time.perf_counter()
        router.choose(prompt, 0.07)
        timings.append(time.perf_counter() - start)
    assert sorted(timings)[len(timings) // 2] < 0.005


# --- with the engine's Lage ---------------------------------------------------------------


def lage(zone_usage: str) -> Lage:
    roads = roads_from_config(
        json.loads((settings.CLUTCH_CONFIG_DIR / "roads.json").read_text(encoding="utf-8"))
    )
    gears = (
        GearSpec("cheap", "p", "openai", "cheap", 1, Decimal("0.1"), Decimal("0.1")),
        GearSpec("dear", "p", "openai", "dear", 5, Decimal("10"), Decimal("10")),
    )
    fuel = Fuel(Decimal(zone_usage), Decimal(100), Decimal(0), Decimal(1000))
    return Lage(gears=gears, roads={r.slug: r for r in roads}, fuel=fuel)


STRECKE = Strecke(
    road="autobahn", confidence=1.0, difficulty=0.9, tempo="urgent", stages=1, prompt_tokens=20
)


def test_the_learned_base_skips_the_shift_and_explains_itself():
    router = lernrouter.fit(synthetic_samples())
    decision = kuppeln_gelernt(
        STRECKE, lage("0"), Wunsch(), random.Random(1), prompt=proof("volcano"), router=router
    )
    assert decision.gear.name == "dear"
    assert decision.reasons[0].data["source"] == "lernrouter"
    assert decision.reasons[0].data["lambda"] == lernrouter.zone_lambda("green")
    assert not any(r.step == "shift" for r in decision.reasons)
    cheap = kuppeln_gelernt(
        STRECKE, lage("0"), Wunsch(), random.Random(1), prompt=poem("volcano"), router=router
    )
    assert cheap.gear.name == "cheap"


def test_in_the_orange_zone_the_router_only_picks_allowed_gears():
    router = lernrouter.fit(synthetic_samples())
    decision = kuppeln_gelernt(
        STRECKE, lage("70"), Wunsch(), random.Random(1), prompt=proof("volcano"), router=router
    )
    assert decision.zone == "orange"
    assert decision.gear.name == "cheap"
    assert decision.reasons[0].data["lambda"] == lernrouter.zone_lambda("orange")


def test_without_a_router_or_with_a_gear_asked_for_the_kupplung_decides():
    base = lage("0")
    plain = kuppeln_gelernt(
        STRECKE, base, Wunsch(gear="cheap"), random.Random(1), prompt="x", router=None
    )
    assert plain.reasons[0].message.startswith("Gear cheap chosen by you")


# --- from the trip log, end to end -----------------------------------------------------------


def test_feedback_counts_like_recorded_correctness(defaults):
    from garage.models import Gear

    gear = Gear.objects.first()
    common = {"gear": gear, "gear_name": gear.name, "cost_usd": Decimal("0.001")}
    Trip.objects.create(task="a", status=TripStatus.SUCCEEDED, feedback=-1, **common)
    Trip.objects.create(task="b", status=TripStatus.SUCCEEDED, feedback=1, **common)
    Trip.objects.create(task="c", status=TripStatus.SUCCEEDED, **common)
    Trip.objects.create(task="d", status=TripStatus.FAILED, **common)
    Trip.objects.create(task="e", status=TripStatus.QUEUED, **common)
    samples = {s.prompt: (s.success, s.weight) for s in lernrouter.samples_from_log()}
    assert samples == {
        "a": (0.0, 1.0),
        "b": (1.0, 1.0),
        "c": (1.0, lernrouter.UNJUDGED_WEIGHT),
        "d": (0.0, 1.0),
    }


def synthetic_table(tmp_path) -> rb.Table:
    scores = {}
    for noun in [*NOUNS, "volcano", "comet", "delta", "reef"]:
        scores[poem(noun)] = ("1.0", "1.0")
        scores[proof(noun)] = ("0.0", "1.0")
    directory = tmp_path / "synthetic"
    directory.mkdir()
    rows = [
        {
            "": n,
            "sample_id": f"s{n}",
            "prompt": repr([prompt]),
            "eval_name": "synthetic",
            "cheap": s[0],
            "dear": s[1],
            "cheap|model_response": repr(["cheap answer"]),
            "dear|model_response": repr(["dear answer"]),
            "cheap|total_cost": CHEAP,
            "dear|total_cost": DEAR,
            "oracle_model_to_route_to": "cheap",
        }
        for n, (prompt, s) in enumerate(scores.items())
    ]
    with (directory / "synthetic.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rb.load(directory)


def test_training_on_the_trip_log_improves_routing(defaults, tmp_path):
    table = synthetic_table(tmp_path)
    mapping = rb.map_models(table)
    train = [r for r in table.rows if not any(n in r.prompt for n in ("volcano", "comet"))]
    held_out = [r for r in table.rows if r not in train]
    replay = Replay(table, mapping)
    with routing_eval.replay_environment():
        routing_eval.prepare_gearbox(table, mapping)
        routing_eval.reset_log(epsilon=0.0)
        untrained = routing_eval.drive(held_out, replay, LernFahrer(use_saved=False, seed=1))
        routing_eval.reset_log(epsilon=0.0)  # the held-out trips must not train the router
        routing_eval.log_outcomes(train, mapping)
        router = lernrouter.fit(lernrouter.samples_from_log())
        trained = routing_eval.drive(held_out, replay, LernFahrer(router=router, seed=1))

    def accuracy(driven):
        return sum(bool(d.correct) for d in driven) / len(driven)

    assert accuracy(untrained) == 0.5  # the road table's gear for every prompt: cheap
    assert {d.model for d in untrained} == {"cheap"}
    assert accuracy(trained) == 1.0
    assert all(d.learned for d in trained)
    assert sum(d.cost_usd for d in trained) < DEAR * len(trained)  # not dear for everything
    assert all(d.model == ("cheap" if "poem" in d.prompt else "dear") for d in trained)


def test_trainieren_saves_a_router_the_fahrer_then_uses(defaults, tmp_path, settings):
    settings.CLUTCH_LERNROUTER_PATH = str(tmp_path / "router.joblib")
    table = synthetic_table(tmp_path)
    mapping = rb.map_models(table)
    with routing_eval.replay_environment():
        routing_eval.prepare_gearbox(table, mapping)
        routing_eval.reset_log(epsilon=0.0)
        routing_eval.log_outcomes(table.rows, mapping)
        report = lernrouter.trainieren()
        assert report["trained"] and set(report["gears"]) == {"cheap", "dear"}
        lernrouter._cache.clear()
        driven = routing_eval.drive(
            [table.row(proof("volcano"))], Replay(table, mapping), LernFahrer(seed=1)
        )
    assert driven[0].learned and driven[0].model == "dear"
