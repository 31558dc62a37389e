"""The decision order of DESIGN.md, on plain data: no database, microseconds per case."""

import json
import random
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from garage.engine.config import gears_from_config
from garage.engine.gas import gas_geben
from garage.engine.kupplung import Lage, Policy, Wunsch, failover_chain, kuppeln
from garage.engine.tankuhr import Fuel, ZoneRules
from garage.engine.types import GearSpec, RoadSpec, Strecke

CONFIG = Path(__file__).resolve().parents[2] / "config"


def load_gears() -> list[GearSpec]:
    return gears_from_config(
        json.loads((CONFIG / "providers.json").read_text()),
        json.loads((CONFIG / "gears.json").read_text()),
    )


def load_roads() -> dict[str, RoadSpec]:
    roads = {}
    for r in json.loads((CONFIG / "roads.json").read_text())["roads"]:
        roads[r["slug"]] = RoadSpec(
            slug=r["slug"],
            label=r["label"],
            difficulty=r["difficulty"],
            default_gear=r["default_gear"],
            throttle=r["throttle"],
            pattern=r["pattern"],
            is_fallback=r.get("fallback", False),
        )
    return roads


ALL_GEARS = load_gears()
GEARS = tuple(g for g in ALL_GEARS if g.provider_kind != "pruefstand")
ROADS = load_roads()


def fuel(usage: str) -> Fuel:
    return Fuel(Decimal(usage) * 50, Decimal(50), Decimal(0), Decimal(500))


def lage(**kw) -> Lage:
    base = {"gears": GEARS, "roads": ROADS, "fuel": fuel("0")}
    base.update(kw)
    return Lage(**base)


def strecke(
    road="bundesstrasse", difficulty=0.55, tempo="normal", stages=1, items=(), prompt_tokens=20
):
    return Strecke(
        road=road,
        confidence=0.9,
        difficulty=difficulty,
        tempo=tempo,
        stages=stages,
        items=items,
        prompt_tokens=prompt_tokens,
    )


def test_bugfix_in_green_zone_takes_the_roads_default():
    d = kuppeln(strecke(), lage(), rng=random.Random(1))
    assert d.gear.name == "claude-sonnet" and d.gear.tier == 3
    assert d.throttle == 0.7 and d.pattern == "single" and d.zone == "green"
    assert [r.step for r in d.reasons][:1] == ["base"]


def test_orange_zone_caps_the_tier_at_two_and_says_why():
    d = kuppeln(strecke(), lage(fuel=fuel("0.65")), rng=random.Random(1))
    assert d.zone == "orange" and d.gear.tier <= 2
    constraint = [r for r in d.reasons if r.step == "constraint"]
    assert constraint and "orange" in constraint[0].message


def test_red_zone_refuses_paid_gears_when_no_free_gear_is_available():
    free = {g.name: "not reachable" for g in GEARS if g.is_free}
    d = kuppeln(strecke(), lage(fuel=fuel("0.85"), unavailable=free), rng=random.Random(1))
    assert d.is_refused and d.gear is None
    assert "red" in d.refused and "paid gears are refused" in d.refused


def test_red_zone_drives_a_free_gear_when_one_is_available():
    d = kuppeln(strecke(), lage(fuel=fuel("0.85")), rng=random.Random(1))
    assert not d.is_refused and d.gear.is_free


def test_red_zone_refuses_an_explicitly_chosen_paid_gear():
    d = kuppeln(strecke(), lage(fuel=fuel("0.9")), Wunsch(gear="claude-opus"), random.Random(1))
    assert d.is_refused and "claude-opus" in d.refused and "red" in d.refused


def test_zone_boundaries_are_half_open():
    rules = ZoneRules()
    assert rules.zone(Decimal("0.2999")) == "green"
    assert rules.zone(Decimal("0.30")) == "yellow"
    assert rules.zone(Decimal("0.60")) == "orange"
    assert rules.zone(Decimal("0.80")) == "red"


def test_usage_is_the_larger_of_day_and_month():
    f = Fuel(Decimal(1), Decimal(50), Decimal(400), Decimal(500))
    assert f.usage == Decimal("0.8") and f.zone == "red"


def test_open_breaker_replaces_gear_with_same_tier_elsewhere_then_lower():
    d = kuppeln(strecke(), lage(open_breakers=frozenset({"claude-sonnet"})), rng=random.Random(1))
    assert d.gear.name != "claude-sonnet" and d.gear.tier <= 3
    assert any("circuit breaker" in r.message for r in d.reasons)


def test_missing_credentials_make_a_gear_unavailable_with_the_variable_to_set():
    d = kuppeln(
        strecke(),
        lage(unavailable={"claude-sonnet": "no key: set ANTHROPIC_API_KEY"}),
        rng=random.Random(1),
    )
    assert d.gear.name != "claude-sonnet"
    assert any("ANTHROPIC_API_KEY" in r.message for r in d.reasons)


def test_prompt_larger_than_the_window_moves_to_a_larger_gear():
    small = next(g for g in GEARS if g.context_window <= 8192)
    d = kuppeln(strecke(prompt_tokens=50_000), lage(), Wunsch(), random.Random(1))
    assert d.gear.context_window > 50_000
    assert small.name != d.gear.name


def test_urgent_caps_throttle_and_shifts_down_from_g5():
    d = kuppeln(
        strecke(road="autobahn", difficulty=0.7, tempo="urgent"), lage(), rng=random.Random(1)
    )
    assert d.throttle <= 0.4 and d.gear.tier == 4


def test_very_difficult_task_shifts_up_one_tier():
    d = kuppeln(strecke(difficulty=0.85), lage(), rng=random.Random(1))
    assert d.gear.tier == 4 and d.throttle == 0.8


def test_thorough_raises_and_easy_lowers_the_throttle():
    assert kuppeln(strecke(tempo="thorough"), lage(), rng=random.Random(1)).throttle == 0.9
    assert (
        kuppeln(strecke(road="feldweg", difficulty=0.1), lage(), rng=random.Random(1)).throttle
        == 0.2
    )


def test_learned_policy_is_used_only_with_enough_samples():
    few = {"bundesstrasse": Policy("gemini-flash", 0.6, "single", samples=3)}
    many = {"bundesstrasse": Policy("gemini-flash", 0.6, "single", samples=50)}
    assert kuppeln(strecke(), lage(policies=few), rng=random.Random(1)).gear.name == "claude-sonnet"
    d = kuppeln(strecke(), lage(policies=many), rng=random.Random(1))
    assert d.gear.name == "gemini-flash" and d.reasons[0].data["source"] == "policy"


def test_exploration_is_deterministic_when_seeded_and_marked():
    runs = [kuppeln(strecke(), lage(epsilon=1.0), rng=random.Random(7)) for _ in range(3)]
    assert all(r.explored for r in runs)
    assert len({(r.gear.name, r.throttle) for r in runs}) == 1
    assert any(r.step == "exploration" for r in runs[0].reasons)


def test_exploration_never_breaks_the_budget():
    for seed in range(200):
        d = kuppeln(strecke(), lage(epsilon=1.0, fuel=fuel("0.65")), rng=random.Random(seed))
        assert d.gear.is_free or d.gear.tier <= 2


def test_swarm_for_many_bulk_items_and_single_for_one():
    items = ("a.py", "b.py", "c.py", "d.py")
    d = kuppeln(strecke(road="rallye", stages=4, items=items), lage(), rng=random.Random(1))
    assert d.pattern == "swarm" and d.legs == 4
    d = kuppeln(strecke(road="rallye", stages=1), lage(), rng=random.Random(1))
    assert d.pattern == "single"


def test_explicit_options_override_each_step():
    d = kuppeln(
        strecke(),
        lage(),
        Wunsch(gear="claude-haiku", throttle=0.25, pattern="convoy", stages=3),
        random.Random(1),
    )
    assert (d.gear.name, d.throttle, d.pattern, d.legs) == ("claude-haiku", 0.25, "convoy", 3)


def test_unknown_gear_is_refused_with_the_known_names():
    d = kuppeln(strecke(), lage(), Wunsch(gear="gpt-17"), random.Random(1))
    assert d.is_refused and "gpt-17" in d.refused and "claude-sonnet" in d.refused


def test_estimates_are_positive_for_paid_gears_and_reserve_is_the_worst_case():
    d = kuppeln(strecke(), lage(), rng=random.Random(1))
    assert Decimal(0) < d.estimated_cost_usd <= d.reserve_usd


def test_failover_chain_prefers_same_tier_then_lower_and_skips_the_failed_gear():
    sonnet = next(g for g in GEARS if g.name == "claude-sonnet")
    chain = failover_chain(sonnet, strecke(), lage())
    assert chain and all(g.name != "claude-sonnet" for g in chain)
    assert [g.tier for g in chain] == sorted(
        [g.tier for g in chain], key=lambda t: (t > 3, abs(3 - t))
    )


def test_gas_maps_throttle_to_each_reasoning_mode():
    budget = GearSpec("b", "p", "anthropic", "m", 3, max_output_tokens=64000, reasoning="budget")
    effort = GearSpec("e", "p", "anthropic", "m", 3, max_output_tokens=64000, reasoning="effort")
    think = GearSpec("t", "p", "ollama", "m", 1, max_output_tokens=8192, reasoning="think")
    none = GearSpec("n", "p", "openai", "m", 1, max_output_tokens=4096, reasoning="none")
    assert gas_geben(budget, 0.2).thinking_budget is None
    high = gas_geben(budget, 0.9)
    assert 1024 <= high.thinking_budget < high.max_output_tokens
    assert gas_geben(effort, 0.2).effort == "low" and gas_geben(effort, 0.9).effort == "high"
    assert gas_geben(think, 0.2).think is False and gas_geben(think, 0.8).think is True
    g = gas_geben(none, 1.0)
    assert g.max_output_tokens == 4096 and g.thinking_budget is None and g.effort is None
    assert gas_geben(none, 0.1).strategy == "direct" and gas_geben(none, 0.9).strategy == "thorough"
    assert "Antworte" in gas_geben(none, 0.1, language="de").system_prompt


ZONE_USAGE = st.sampled_from(["0", "0.1", "0.3", "0.45", "0.6", "0.7", "0.8", "0.95", "1.2"])


@settings(max_examples=400, deadline=None)
@given(
    road=st.sampled_from(sorted(ROADS)),
    difficulty=st.floats(0, 1),
    tempo=st.sampled_from(["urgent", "normal", "thorough"]),
    stages=st.integers(1, 12),
    prompt_tokens=st.integers(1, 2_000_000),
    usage=ZONE_USAGE,
    broken=st.sets(st.sampled_from([g.name for g in GEARS])),
    missing=st.sets(st.sampled_from([g.name for g in GEARS])),
    policy_gear=st.none() | st.sampled_from([g.name for g in GEARS]),
    samples=st.integers(0, 100),
    epsilon=st.floats(0, 1),
    seed=st.integers(0, 2**32),
    pinned=st.none() | st.sampled_from([g.name for g in ALL_GEARS]),
)
def test_the_decision_never_breaks_a_constraint(
    road,
    difficulty,
    tempo,
    stages,
    prompt_tokens,
    usage,
    broken,
    missing,
    policy_gear,
    samples,
    epsilon,
    seed,
    pinned,
):
    policies = {road: Policy(policy_gear, 0.5, "single", samples)} if policy_gear else {}
    state = lage(
        fuel=fuel(usage),
        open_breakers=frozenset(broken),
        unavailable=dict.fromkeys(missing, "no key"),
        policies=policies,
        epsilon=epsilon,
        extra_gears=tuple(g for g in ALL_GEARS if g.provider_kind == "pruefstand"),
    )
    s = strecke(
        road=road, difficulty=difficulty, tempo=tempo, stages=stages, prompt_tokens=prompt_tokens
    )
    d = kuppeln(s, state, Wunsch(gear=pinned), random.Random(seed))
    assert 0 <= d.throttle <= 1
    assert d.reasons, "every decision explains itself"
    if d.is_refused:
        assert d.gear is None and d.refused
        return
    gear = d.gear
    assert gear.is_free or gear.tier <= state.fuel.tier_cap
    assert gear.name not in broken
    assert gear.name not in missing
    assert prompt_tokens + 60 + min(1024, gear.max_output_tokens) <= gear.context_window
    if pinned:
        assert gear.name == pinned
