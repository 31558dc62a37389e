"""Kickdown: answer kinds and letters, chains learned from a log, and kickdown trips through
the real Fahrer on the replayed Prüfstand (cheap gears agree / disagree / top gear forbidden)."""

import csv
import json
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from fahrtenbuch.models import Leg, Trip
from garage import bordcomputer, kickdown, lernrouter, routing_eval
from garage import routerbench as rb
from garage.lernkupplung import LernFahrer
from garage.models import Gear
from garage.motorblock.base import ErrorKind, MotorError
from garage.motorblock.replay import Replay, installed

CHOICE_4 = 'Print only a single choice  from "A" or "B" or "C" or "D" without explanation.'
CHEAP_A, CHEAP_B, TOP = "lab/cheap-a", "lab/cheap-b", "lab/top"
COSTS = {CHEAP_A: 0.0001, CHEAP_B: 0.0002, TOP: 0.01}


# --- answer kinds and letters ----------------------------------------------------------------


def test_the_answer_kind_comes_from_the_prompts_last_instruction():
    few_shot = (
        'Q1\nA) x\nB) y\nPrint only a single choice from "A" or "B" without explanation.\n'
        f"Answer:\nA\n\nQ2\nA) x\nB) y\nC) z\nD) w\n{CHOICE_4}\nAnswer:"
    )
    assert kickdown.answer_kind(few_shot) == "choice:ABCD"
    assert kickdown.answer_kind('Print only a single choice from "A" or "B"') == "choice:AB"
    assert kickdown.answer_kind("Write a python function to add two numbers.") == "text"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("B", "B"),
        ("  C) the wet palms", "C"),
        ("D.", "D"),
        ("(A)", "A"),
        ("The answer is B.", "B"),
        ("I think (C) is right", "C"),
        ("E) none of these", None),  # not an allowed letter, and no allowed one alone
        ("A lot of heat, so B", "A"),  # a leading allowed letter stands, even as a word
        ("", None),
        ("no idea", None),
    ],
)
def test_normalise_takes_a_leading_allowed_letter_else_the_first_standing_alone(answer, expected):
    assert kickdown.normalise(answer, "choice:ABCD") == expected


def test_free_text_answers_are_never_compared():
    assert kickdown.normalise("A", "text") is None


def test_the_verdict_says_why():
    assert kickdown.verdict([("a", "A")], complete=False) is None
    agree = kickdown.verdict([("a", "A"), ("b", "A")], complete=True)
    assert agree.accept and agree.letter == "A" and agree.why == "a and b agree (A)"
    differ = kickdown.verdict([("a", "A"), ("b", "C")], complete=False)
    assert not differ.accept and differ.why == "a and b disagreed (A vs C)"
    missing = kickdown.verdict([("a", None)], complete=False)
    assert not missing.accept and missing.why == "a gave no recognisable answer"


# --- chains learned from a log -----------------------------------------------------------------


def synthetic_rows(n: int, *, offset: int = 0) -> list[rb.Row]:
    """Choice prompts: cheap-a and cheap-b agree and are right on 3 of 5 prompts; on one
    cheap-a is wrong, on another cheap-b, so they disagree; the top gear is always right."""
    rows = []
    for i in range(offset, offset + n):
        right = "ABCD"[i % 4]
        wrong = "ABCD"[(i + 2) % 4]
        a = wrong if i % 5 == 0 else right
        b = wrong if i % 5 == 3 else right
        answers = {CHEAP_A: a, CHEAP_B: b, TOP: f"{right})"}
        rows.append(
            rb.Row(
                sample_id=f"s{i}",
                eval_name="synthetic",
                prompt=f"Question {i}: which letter is number {i % 4}?\n{CHOICE_4}\nAnswer:",
                scores={
                    m: float(kickdown.normalise(t, "choice:ABCD") == right)
                    for m, t in answers.items()
                },
                costs=COSTS,
                responses=answers,
            )
        )
    return rows


def outcomes(rows: list[rb.Row]) -> list[kickdown.Outcome]:
    return [
        kickdown.Outcome(r.prompt, m, r.responses[m], r.scores[m], r.costs[m])
        for r in rows
        for m in r.responses
    ]


def test_the_learned_chain_is_the_known_best_one():
    plan = kickdown.learn(outcomes(synthetic_rows(100)))
    chains = plan.chains["choice:ABCD"]
    assert {c.top for c in chains} == {TOP}
    both = next(c for c in chains if c.cheap == (CHEAP_A, CHEAP_B))
    assert both.accuracy == 1.0  # every disagreement went to the top gear, which is right
    assert both.kickdown_rate == pytest.approx(0.4)
    assert both.cost_usd == pytest.approx(0.0001 + 0.0002 + 0.4 * 0.01)
    only_a = next(c for c in chains if c.cheap == (CHEAP_A,))
    assert only_a.accuracy == pytest.approx(0.8) and only_a.kickdown_rate == 0.0
    # Priced like a trip: a little cost for quality picks the pair; a lot of it, cheap-a alone.
    everything = {CHEAP_A, CHEAP_B, TOP}
    assert plan.best("choice:ABCD", 0.07, 0.01, everything).cheap == (CHEAP_A, CHEAP_B)
    assert plan.best("choice:ABCD", 50.0, 0.01, everything).cheap == (CHEAP_A,)
    assert plan.best("choice:ABCD", 0.07, 0.01, {CHEAP_A, CHEAP_B}) is None  # no top gear
    assert plan.best("text", 0.07, 0.01, everything) is None


def test_free_text_prompts_and_too_few_prompts_learn_no_chain():
    text = [
        kickdown.Outcome(f"Write function {i}", g, "def f(): pass", 1.0, 0.1)
        for i in range(40)
        for g in "ab"
    ]
    assert kickdown.learn(text).chains == {}
    assert kickdown.learn(outcomes(synthetic_rows(10))).chains == {}


# --- kickdown trips through the Fahrer ---------------------------------------------------------


@pytest.fixture
def synthetic(defaults):
    """A gearbox of the three models, a router trained on 100 logged prompts (every model's
    outcome), and 10 more prompts to drive."""
    table = rb.Table((CHEAP_A, CHEAP_B, TOP), tuple(synthetic_rows(110)))
    mapping = rb.map_models(table)
    with routing_eval.replay_environment():
        routing_eval.prepare_gearbox(table, mapping)
        routing_eval.reset_log(epsilon=0.0)
        routing_eval.log_outcomes(table.rows[:100], mapping)
        router = lernrouter.fit(lernrouter.samples_from_log())
        Trip.objects.all().delete()
        yield table, mapping, router


def drive(table, mapping, router, row):
    with routing_eval.replay_environment(), installed(Replay(table, mapping)):
        result = LernFahrer(router=router, use_saved=False, seed=1).fahren(
            row.prompt, pattern="single"
        )
    assert result.ok, result.error
    return Trip.objects.get(pk=result.trip_id)


def money(x: float) -> Decimal:
    return Decimal(repr(x)).quantize(Decimal("1e-8"))


def test_cheap_gears_that_agree_answer_without_the_top_gear(synthetic):
    table, mapping, router = synthetic
    row = table.rows[101]  # 101 % 5 != 0: both cheap gears give the right letter
    trip = drive(table, mapping, router, row)
    legs = list(Leg.objects.filter(trip=trip).order_by("position"))
    assert [leg.gear_name for leg in legs] == ["cheap-a", "cheap-b"]
    assert all(leg.status == "succeeded" and leg.attempts for leg in legs)
    assert [leg.cost_usd for leg in legs] == [money(COSTS[CHEAP_A]), money(COSTS[CHEAP_B])]
    assert trip.output == row.responses[CHEAP_A]
    assert trip.gear_name == "cheap-a"
    assert trip.cost_usd == sum(leg.cost_usd for leg in legs)
    assert trip.input_tokens == sum(leg.input_tokens for leg in legs)
    messages = [r["message"] for r in trip.reasons]
    base = next(r for r in trip.reasons if r["step"] == "base")
    assert "kickdown cheap-a → cheap-b, else top" in base["message"]
    assert "100.0% right at ~0.004300 USD" in base["message"]
    assert "beats the best single gear there, top (100.0% at ~0.010000 USD" in base["message"]
    assert "no kickdown: cheap-a and cheap-b agree (B)." in messages
    assert trip.events.filter(kind="kickdown", data__escalated=False).exists()


def test_a_disagreement_kicks_down_to_the_top_gear(synthetic):
    table, mapping, router = synthetic
    row = table.rows[105]  # cheap-a wrong (D), cheap-b right (B)
    trip = drive(table, mapping, router, row)
    legs = list(Leg.objects.filter(trip=trip).order_by("position"))
    assert [leg.gear_name for leg in legs] == ["cheap-a", "cheap-b", "top"]
    assert [leg.title for leg in legs] == [
        "kickdown 1/2: cheap-a",
        "kickdown 2/2: cheap-b",
        "kickdown: top",
    ]
    assert trip.output == row.responses[TOP] == "B)"
    assert trip.gear_name == "top" and trip.gear == Gear.objects.get(name="top")
    assert trip.cost_usd == sum(money(c) for c in COSTS.values())
    assert "kickdown: cheap-a and cheap-b disagreed (D vs B) → top." in [
        r["message"] for r in trip.reasons
    ]
    event = trip.events.get(kind="kickdown")
    assert event.data["escalated"] and event.data["answers"] == {"cheap-a": "D", "cheap-b": "B"}


def test_a_forbidden_top_gear_means_no_kickdown(synthetic):
    table, mapping, router = synthetic
    bordcomputer.record_failure(Gear.objects.get(name="top"), "down", force_open=True)
    trip = drive(table, mapping, router, table.rows[105])
    assert Leg.objects.filter(trip=trip).count() == 1
    assert not any(r["step"] == "kickdown" for r in trip.reasons)
    assert trip.gear_name != "top"


def test_a_forbidden_cheap_gear_never_drives_in_a_chain(synthetic):
    table, mapping, router = synthetic
    bordcomputer.record_failure(Gear.objects.get(name="cheap-b"), "down", force_open=True)
    trip = drive(table, mapping, router, table.rows[105])
    assert "cheap-b" not in Leg.objects.filter(trip=trip).values_list("gear_name", flat=True)


def test_a_cheap_gear_that_fails_is_a_missing_answer_and_kicks_down(synthetic):
    table, mapping, router = synthetic
    replay = Replay(table, mapping)

    def handler(prompt: str, config: dict) -> dict:
        if config["gear"] == "cheap-b":
            raise MotorError(ErrorKind.INVALID_REQUEST, "cheap-b rejects this prompt")
        return replay.handler(prompt, config)

    row = table.rows[101]  # both cheap gears would agree
    with routing_eval.replay_environment():
        result = LernFahrer(router=router, use_saved=False, seed=1).fahren(
            row.prompt, handler, pattern="single"
        )
    assert result.ok, result.error
    trip = Trip.objects.get(pk=result.trip_id)
    legs = list(Leg.objects.filter(trip=trip).order_by("position"))
    assert [(leg.gear_name, leg.status) for leg in legs] == [
        ("cheap-a", "succeeded"),
        ("cheap-b", "failed"),
        ("top", "succeeded"),
    ]
    assert trip.output == row.responses[TOP] and trip.gear_name == "top"
    assert "kickdown: cheap-b gave no recognisable answer → top." in [
        r["message"] for r in trip.reasons
    ]


def write_table(directory: Path, rows: list[rb.Row]) -> None:
    """A RouterBench-format CSV of the rows."""
    models = list(COSTS)
    header = ["sample_id", "prompt", "eval_name", *models]
    header += [f"{m}|model_response" for m in models] + [f"{m}|total_cost" for m in models]
    with (directory / "synthetic.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for r in rows:
            writer.writerow(
                [r.sample_id, repr([r.prompt]), r.eval_name]
                + [r.scores[m] for m in models]
                + [repr([r.responses[m]]) for m in models]
                + [r.costs[m] for m in models]
            )


def test_evaluate_routing_drives_kickdowns_and_reports_them(db, tmp_path):
    text_rows = [
        rb.Row(
            sample_id=f"t{i}",
            eval_name="synthetic-code",
            prompt=f"Write a python function number {i}.",
            scores={CHEAP_A: float(i % 2), CHEAP_B: 1.0, TOP: 1.0},
            costs=COSTS,
            responses=dict.fromkeys(COSTS, "def f(): pass"),
        )
        for i in range(30)
    ]
    write_table(tmp_path, synthetic_rows(80) + text_rows)
    out = StringIO()
    call_command(
        "evaluate_routing", "--data", str(tmp_path), "--folds", "2", "--curve-trips", "0",
        "--json", "--in-place", stdout=out, stderr=StringIO(),
    )  # fmt: skip
    report = json.loads(out.getvalue())
    router = report["router"]
    for key in ("accuracy", "mean_cost_usd", "aiq"):
        assert isinstance(router[key], float)
    assert {"accuracy", "mean_cost_usd"} <= set(report["models"][TOP])
    assert {"accuracy", "mean_cost_usd"} <= set(report["oracle"]) | set(report["random"])
    assert router["kickdown"]["trips"] == 80  # every choice prompt, never a code prompt
    assert router["kickdown"]["escalated"] == 32  # the two in five that disagree
    assert router["engine_agrees_with_router"] == 1.0
    # Every disagreement went to the top gear: the choice prompts are all right, for 43 % of
    # the top gear's price (the code prompts, with no cheap gear judged as good, go to it).
    assert router["accuracy"] == report["models"][TOP]["accuracy"] == 1.0
    assert router["mean_cost_usd"] == pytest.approx((80 * 0.0043 + 30 * 0.01) / 110)
