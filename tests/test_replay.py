"""The replayed Prüfstand: recorded answer, cost and correctness, alone and through the Fahrer."""

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from fahrtenbuch.models import Trip
from garage import routerbench as rb
from garage import routing_eval
from garage.engine.gas import gas_geben
from garage.engine.types import GearSpec
from garage.fahrer import Fahrer
from garage.motorblock import registry
from garage.motorblock.base import Anfrage, MotorError
from garage.motorblock.replay import Replay, installed

SMALL = Path(__file__).parent / "fixtures" / "routerbench_small"
GPT4 = "gpt-4-1106-preview"


@pytest.fixture(scope="module")
def table() -> rb.Table:
    return rb.load(SMALL)


@pytest.fixture(scope="module")
def mapping(table):
    return rb.map_models(table)


def anfrage(prompt: str, gear: str) -> Anfrage:
    spec = GearSpec(
        name=gear, provider="routerbench", provider_kind="openai", model_id=gear, tier=3
    )
    return Anfrage(
        gear=spec,
        messages=({"role": "user", "content": prompt},),
        gas=gas_geben(spec, 0.5),
        simulated=True,
    )


def test_a_mapped_gear_returns_the_models_recorded_answer_cost_and_correctness(table, mapping):
    row = next(r for r in table.rows if r.eval_name == "mbpp")
    replay = Replay(table, mapping)
    gear = next(m.gear for m in mapping if m.model == GPT4)
    seen = []
    antwort = asyncio.run(replay.call(anfrage(row.prompt, gear), lambda k, t: seen.append(t)))
    assert antwort.text == row.responses[GPT4]
    assert antwort.cost_usd == Decimal(repr(row.costs[GPT4])).quantize(Decimal("1e-8"))
    assert antwort.extra["correct"] is (row.scores[GPT4] == 1.0)
    assert antwort.extra["model"] == GPT4
    assert antwort.simulated
    assert "".join(seen) == row.responses[GPT4]


def test_a_missing_score_replays_as_unknown_correctness(table, mapping):
    row = next(r for r in table.rows if r.scores[GPT4] is None)
    gear = next(m.gear for m in mapping if m.model == GPT4)
    antwort = asyncio.run(Replay(table, mapping).call(anfrage(row.prompt, gear)))
    assert antwort.extra["correct"] is None


def test_an_unknown_prompt_or_unmapped_gear_is_an_error(table, mapping):
    replay = Replay(table, mapping)
    with pytest.raises(MotorError, match="not found"):
        asyncio.run(replay.call(anfrage("Something else entirely", mapping[0].gear)))
    with pytest.raises(MotorError, match="not mapped"):
        asyncio.run(replay.call(anfrage(table.rows[0].prompt, "claude-opus")))


def test_installed_replay_stands_in_for_the_pruefstand_and_is_removed_after(table, mapping):
    before = registry._default_pruefstand
    replay = Replay(table, mapping)
    with installed(replay):
        assert registry.default_pruefstand() is replay
    assert registry._default_pruefstand is before


def test_through_the_fahrer_the_trip_logs_the_recorded_answer_and_cost(
    defaults, table, mapping, monkeypatch
):
    with routing_eval.replay_environment():
        routing_eval.prepare_gearbox(table, mapping)
        row = table.rows[3]
        replay = Replay(table, mapping)
        gear = mapping[-1]
        with installed(replay):
            result = Fahrer(seed=1).fahren(row.prompt, gear=gear.gear, pattern="single")
    assert result.ok, result.error
    trip = Trip.objects.get(pk=result.trip_id)
    assert trip.output == row.responses[gear.model]
    assert trip.cost_usd == Decimal(repr(row.costs[gear.model])).quantize(Decimal("1e-8"))
    assert trip.simulated
    assert replay.calls == 1


def test_the_handler_form_answers_with_the_recorded_text(defaults, table, mapping):
    replay = Replay(table, mapping)
    row = table.rows[0]
    gear = mapping[0]
    assert replay.handler(row.prompt, {"gear": gear.gear}) == {"output": row.responses[gear.model]}
