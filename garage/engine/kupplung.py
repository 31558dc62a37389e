"""Kupplung: which gear, which throttle, which pattern, and why.

The decision order of DESIGN.md, one function per step, each appending a Reason:
base → throttle → shift → exploration → constraints → pattern. Exploration runs before the
constraints, so an exploring trip can never break the budget or drive into an open breaker.
"""

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from garage.engine.gas import Gas, gas_geben
from garage.engine.tankuhr import Fuel
from garage.engine.types import GearSpec, Reason, RoadSpec, Strecke

PATTERNS = ("single", "convoy", "team", "swarm", "hybrid")
SWARM_ROADS = frozenset({"rallye", "testfahrt", "feldweg"})
SYSTEM_PROMPT_TOKENS = 60


@dataclass(frozen=True, slots=True)
class Policy:
    """What the Fahrschule learned for one road."""

    gear: str
    throttle: float
    pattern: str
    samples: int


@dataclass(frozen=True)
class Lage:
    """Everything the decision looks at, as plain data (loaded by the services)."""

    gears: tuple[GearSpec, ...]  # gears clutch may choose on its own, in table order
    roads: Mapping[str, RoadSpec]
    fuel: Fuel
    open_breakers: frozenset[str] = frozenset()
    unavailable: Mapping[str, str] = field(default_factory=dict)  # gear name → why
    policies: Mapping[str, Policy] = field(default_factory=dict)
    min_samples: int = 20
    epsilon: float = 0.0
    extra_gears: tuple[GearSpec, ...] = ()  # only when asked for by name (the Prüfstand's)

    def gear(self, name: str) -> GearSpec | None:
        for gear in (*self.gears, *self.extra_gears):
            if gear.name == name:
                return gear
        return None


@dataclass(frozen=True, slots=True)
class Vorschlag:
    """A gear proposed for this very prompt (by the Lernrouter), taking the base step; with
    ``kickdown`` (cheap gears in order, then the top gear) ``gear`` is the first of them."""

    gear: str
    message: str
    data: dict = field(default_factory=dict)
    kickdown: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Wunsch:
    """What the person asked for explicitly; each set field overrides a step."""

    gear: str | None = None
    throttle: float | None = None
    pattern: str | None = None
    stages: int = 0  # explicit steps, members or items


@dataclass(frozen=True)
class Entscheidung:
    strecke: Strecke
    gear: GearSpec | None
    throttle: float
    pattern: str
    zone: str
    reasons: tuple[Reason, ...]
    explored: bool = False
    refused: str | None = None
    gas: Gas | None = None
    legs: int = 1
    estimated_cost_usd: Decimal = Decimal(0)
    reserve_usd: Decimal = Decimal(0)  # worst case, what the Tankuhr holds before calling
    kickdown: tuple[str, ...] = ()  # cheap gears in order, then the top gear (see Kickdown)

    @property
    def is_refused(self) -> bool:
        return self.refused is not None

    def as_dict(self) -> dict:
        gear = self.gear
        return {
            "road": self.strecke.road,
            "confidence": round(self.strecke.confidence, 3),
            "difficulty": round(self.strecke.difficulty, 3),
            "tempo": self.strecke.tempo,
            "stages": self.strecke.stages,
            "gear": None
            if gear is None
            else {
                "name": gear.name,
                "provider": gear.provider,
                "model_id": gear.model_id,
                "tier": gear.tier,
                "simulated": gear.simulated,
            },
            "throttle": self.throttle,
            "pattern": self.pattern,
            "zone": self.zone,
            "explored": self.explored,
            "refused": self.refused,
            "legs": self.legs,
            "kickdown": list(self.kickdown),
            "reasons": [r.as_dict() for r in self.reasons],
            "estimated_cost_usd": str(self.estimated_cost_usd),
            "reserve_usd": str(self.reserve_usd),
            "gas": None if self.gas is None else self.gas.as_dict(),
        }


@dataclass
class _Draft:
    gear: GearSpec | None
    throttle: float
    pattern: str
    reasons: list[Reason]
    pinned_gear: bool = False
    learned: bool = False
    explored: bool = False
    kickdown: tuple[str, ...] = ()


def _clamp(value: float) -> float:
    return round(min(max(value, 0.0), 1.0), 2)


def _nearest(lage: Lage, tier: int, prefer_provider: str, allowed) -> GearSpec | None:
    """Same tier (preferred provider first), then lower tiers, then higher ones."""
    order = [tier, *range(tier - 1, 0, -1), *range(tier + 1, 6)]
    for t in order:
        candidates = [g for g in lage.gears if g.tier == t and allowed(g)]
        candidates.sort(key=lambda g: g.provider != prefer_provider)
        if candidates:
            return candidates[0]
    return None


def _base(
    strecke: Strecke, lage: Lage, wunsch: Wunsch, vorschlag: Vorschlag | None = None
) -> _Draft | str:
    road = lage.roads[strecke.road]
    if wunsch.gear:
        gear = lage.gear(wunsch.gear)
        if gear is None:
            known = ", ".join(g.name for g in (*lage.gears, *lage.extra_gears))
            return f"Unknown gear {wunsch.gear!r}; choose one of: {known}."
        return _Draft(
            gear,
            road.throttle,
            road.pattern,
            [Reason("base", f"Gear {gear.name} chosen by you.", {"gear": gear.name})],
            pinned_gear=True,
        )
    if vorschlag is not None and lage.gear(vorschlag.gear):
        return _Draft(
            lage.gear(vorschlag.gear),
            road.throttle,
            road.pattern,
            [Reason("base", vorschlag.message, {"source": "lernrouter", **vorschlag.data})],
            learned=True,
            kickdown=vorschlag.kickdown,
        )
    policy = lage.policies.get(road.slug)
    if policy is not None and policy.samples >= lage.min_samples and lage.gear(policy.gear):
        return _Draft(
            lage.gear(policy.gear),
            policy.throttle,
            policy.pattern,
            [
                Reason(
                    "base",
                    f"Learned policy for {road.slug}: {policy.gear} at {policy.throttle:.2f} "
                    f"from {policy.samples} trips.",
                    {"source": "policy", "gear": policy.gear, "samples": policy.samples},
                )
            ],
        )
    gear = lage.gear(road.default_gear)
    why = "" if policy is None else f" (policy has {policy.samples} of {lage.min_samples} trips)"
    return _Draft(
        gear,
        road.throttle,
        road.pattern,
        [
            Reason(
                "base",
                f"Road {road.slug}: default gear {road.default_gear}, throttle {road.throttle:.2f}{why}.",
                {"source": "road", "gear": road.default_gear},
            )
        ],
    )


def _throttle(draft: _Draft, strecke: Strecke, wunsch: Wunsch) -> None:
    if wunsch.throttle is not None:
        draft.throttle = _clamp(wunsch.throttle)
        draft.reasons.append(Reason("throttle", f"Throttle {draft.throttle:.2f} set by you."))
        return
    before = draft.throttle
    notes = []
    if strecke.difficulty > 0.7:
        draft.throttle += 0.1
        notes.append(f"difficulty {strecke.difficulty:.2f} > 0.7: up")
    elif strecke.difficulty < 0.3:
        draft.throttle -= 0.1
        notes.append(f"difficulty {strecke.difficulty:.2f} < 0.3: down")
    if strecke.tempo == "urgent" and draft.throttle > 0.4:
        draft.throttle = 0.4
        notes.append("urgent: capped at 0.40")
    elif strecke.tempo == "thorough":
        draft.throttle += 0.2
        notes.append("thorough: up")
    draft.throttle = _clamp(draft.throttle)
    if notes:
        draft.reasons.append(
            Reason(
                "throttle",
                f"Throttle {before:.2f} → {draft.throttle:.2f} ({'; '.join(notes)}).",
                {"from": before, "to": draft.throttle},
            )
        )


def _shift(draft: _Draft, strecke: Strecke, lage: Lage) -> None:
    gear = draft.gear
    # A learned choice already priced how hard this prompt is; a chosen gear stays chosen.
    if draft.pinned_gear or draft.learned or gear is None:
        return
    target = gear.tier
    if strecke.tempo == "urgent" and gear.tier >= 4:
        target, why = gear.tier - 1, "urgent task: shift down one tier"
    elif strecke.difficulty > 0.8 and gear.tier < 5:
        target, why = gear.tier + 1, f"difficulty {strecke.difficulty:.2f} > 0.8: shift up one tier"
    else:
        return
    shifted = _nearest(lage, target, gear.provider, lambda g: g.tier == target)
    if shifted is not None:
        draft.gear = shifted
        draft.reasons.append(
            Reason(
                "shift",
                f"{why}: {gear.name} → {shifted.name}.",
                {"from": gear.name, "to": shifted.name},
            )
        )


def _explore(draft: _Draft, lage: Lage, rng: random.Random) -> None:
    if draft.pinned_gear or draft.gear is None or lage.epsilon <= 0:
        return
    if rng.random() >= lage.epsilon:
        return
    current = draft.gear
    neighbours = [
        g for g in lage.gears if g.name != current.name and abs(g.tier - current.tier) <= 1
    ]
    if neighbours and rng.random() < 0.5:
        draft.gear = rng.choice(neighbours)
        draft.explored = True
        draft.reasons.append(
            Reason(
                "exploration",
                f"Exploring (ε={lage.epsilon:.3f}): trying {draft.gear.name} instead of {current.name}.",
                {"from": current.name, "to": draft.gear.name},
            )
        )
        return
    before = draft.throttle
    draft.throttle = _clamp(before + rng.choice((-0.2, 0.2)))
    draft.explored = True
    draft.reasons.append(
        Reason(
            "exploration",
            f"Exploring (ε={lage.epsilon:.3f}): throttle {before:.2f} → {draft.throttle:.2f}.",
            {"from": before, "to": draft.throttle},
        )
    )


def _violations(gear: GearSpec, strecke: Strecke, lage: Lage) -> list[str]:
    problems = []
    fuel = lage.fuel
    if not gear.is_free and gear.tier > fuel.tier_cap:
        if fuel.tier_cap == 0:
            problems.append(
                f"budget zone {fuel.zone} ({float(fuel.usage) * 100:.1f} % used): paid gears are refused"
            )
        else:
            problems.append(f"budget zone {fuel.zone} allows tiers up to G{fuel.tier_cap}")
    if gear.name in lage.open_breakers:
        problems.append("its circuit breaker is open")
    if gear.name in lage.unavailable:
        problems.append(lage.unavailable[gear.name])
    needed = strecke.prompt_tokens + SYSTEM_PROMPT_TOKENS + min(1024, gear.max_output_tokens)
    if needed > gear.context_window:
        problems.append(
            f"prompt of ~{strecke.prompt_tokens} tokens exceeds its {gear.context_window}-token window"
        )
    return problems


def _constrain(draft: _Draft, strecke: Strecke, lage: Lage) -> str | None:
    gear = draft.gear
    if gear is None:
        problems = ["the road's default gear is not in the gearbox"]
    else:
        problems = _violations(gear, strecke, lage)
        if not problems:
            return None
    name = gear.name if gear else lage.roads[strecke.road].default_gear
    if draft.pinned_gear:
        return f"Gear {name} refused: {'; '.join(problems)}."
    replacement = _nearest(
        lage,
        gear.tier if gear else 3,
        gear.provider if gear else "",
        lambda g: not _violations(g, strecke, lage),
    )
    if replacement is None:
        fuel = lage.fuel
        hint = (
            " Enable a local zero-cost gear (Ollama, llama.cpp) or raise the budget."
            if fuel.tier_cap == 0
            else ""
        )
        return f"No allowed gear: {name} is out ({'; '.join(problems)}) and no other gear may drive.{hint}"
    draft.reasons.append(
        Reason(
            "constraint",
            f"{name} is out ({'; '.join(problems)}): using {replacement.name} (G{replacement.tier}).",
            {"from": name, "to": replacement.name, "problems": problems},
        )
    )
    draft.gear = replacement
    return None


def _pattern(draft: _Draft, strecke: Strecke, wunsch: Wunsch) -> int:
    """Sets the pattern and returns how many legs it will drive."""
    stages = max(wunsch.stages, strecke.stages, len(strecke.items), 1)
    if wunsch.pattern:
        draft.pattern = wunsch.pattern
        draft.reasons.append(Reason("pattern", f"Pattern {wunsch.pattern} set by you."))
    else:
        before = draft.pattern
        if stages >= 3 and strecke.road in SWARM_ROADS:
            draft.pattern, why = "swarm", f"{stages} independent items"
        elif strecke.road == "teamfahrt" and stages >= 2:
            draft.pattern, why = "team", f"specialist road with {stages} stages"
        elif strecke.road == "konvoi" and stages >= 2:
            draft.pattern, why = "convoy", f"pipeline of {stages} steps"
        elif draft.pattern != "single" and stages < 2:
            draft.pattern, why = "single", f"{before} needs several stages, the task has one"
        else:
            why = "the road's pattern"
        draft.reasons.append(
            Reason("pattern", f"Pattern {draft.pattern}: {why}.", {"stages": stages})
        )
    return {
        "single": 1,
        "convoy": stages,
        "team": stages + 1,
        "swarm": stages,
        "hybrid": stages + 2,
    }[draft.pattern]


def kuppeln(
    strecke: Strecke,
    lage: Lage,
    wunsch: Wunsch = Wunsch(),
    rng: random.Random | None = None,
    vorschlag: Vorschlag | None = None,
) -> Entscheidung:
    """Decide gear, throttle and pattern for an analysed task; ``vorschlag`` is a gear the
    Lernrouter proposes for this prompt (it takes the base step)."""
    rng = rng or random.Random()
    zone = lage.fuel.zone
    base = _base(strecke, lage, wunsch, vorschlag)
    if isinstance(base, str):
        return Entscheidung(
            strecke, None, 0.0, "single", zone, (Reason("base", base),), refused=base
        )
    draft = base
    _throttle(draft, strecke, wunsch)
    _shift(draft, strecke, lage)
    _explore(draft, lage, rng)
    refused = _constrain(draft, strecke, lage)
    if draft.kickdown and not refused:
        _keep_kickdown(draft, strecke, lage)
    if refused:
        draft.reasons.append(Reason("refused", refused))
        return Entscheidung(
            strecke,
            None,
            draft.throttle,
            draft.pattern,
            zone,
            tuple(draft.reasons),
            explored=draft.explored,
            refused=refused,
        )
    legs = _pattern(draft, strecke, wunsch)
    if draft.kickdown and draft.pattern != "single":
        draft.reasons.append(
            Reason("kickdown", f"No kickdown: the {draft.pattern} pattern drives several legs.")
        )
        draft.kickdown = ()
    gear = draft.gear
    gas = gas_geben(gear, draft.throttle, language=strecke.language)
    prompt = strecke.prompt_tokens + SYSTEM_PROMPT_TOKENS
    typical_output = min(gas.max_output_tokens, 400 + int(1600 * draft.throttle))
    estimated = gear.cost(prompt, typical_output) * legs
    reserve = gear.cost(prompt, gas.max_output_tokens) * legs
    if draft.kickdown:
        chain = [lage.gear(name) for name in draft.kickdown]
        legs = len(chain)  # at most: the top gear drives only on a kickdown
        estimated = sum((g.cost(prompt, typical_output) for g in chain), Decimal(0))
        reserve = sum((g.cost(prompt, gas.max_output_tokens) for g in chain), Decimal(0))
    return Entscheidung(
        strecke,
        gear,
        draft.throttle,
        draft.pattern,
        zone,
        tuple(draft.reasons),
        explored=draft.explored,
        gas=gas,
        legs=legs,
        estimated_cost_usd=estimated.quantize(Decimal("0.00000001")),
        reserve_usd=reserve.quantize(Decimal("0.00000001")),
        kickdown=draft.kickdown,
    )


def _keep_kickdown(draft: _Draft, strecke: Strecke, lage: Lage) -> None:
    """The kickdown survives exploration and the constraints only as proposed: an explored or
    replaced first gear drives alone, and every gear of the chain must still be allowed."""
    chain = draft.kickdown
    why = None
    if draft.gear is None or draft.gear.name != chain[0]:
        why = f"{draft.gear.name if draft.gear else 'no gear'} drives instead of {chain[0]}"
    else:
        for name in chain:
            gear = lage.gear(name)
            problems = ["not in the gearbox"] if gear is None else _violations(gear, strecke, lage)
            if problems:
                why = f"{name} is out ({'; '.join(problems)})"
                break
    if why is not None:
        draft.kickdown = ()
        draft.reasons.append(Reason("kickdown", f"No kickdown: {why}.", {"dropped": list(chain)}))
        return
    draft.reasons.append(
        Reason(
            "kickdown",
            f"Kickdown: {' → '.join(chain[:-1])}; on a missing answer or a disagreement, "
            f"{chain[-1]}.",
            {"chain": list(chain[:-1]), "top": chain[-1]},
        )
    )


def failover_chain(
    gear: GearSpec, strecke: Strecke, lage: Lage, *, limit: int = 3, larger_window: bool = False
) -> list[GearSpec]:
    """The next allowed gears after ``gear`` fails, nearest first (same tier on another
    provider, then down, then up); with ``larger_window`` only gears with a larger context."""
    order = [gear.tier, *range(gear.tier - 1, 0, -1), *range(gear.tier + 1, 6)]
    chain: list[GearSpec] = []
    for tier in order:
        candidates = sorted(
            (g for g in lage.gears if g.tier == tier and g.name != gear.name),
            key=lambda g: g.provider == gear.provider,  # another provider first
        )
        for candidate in candidates:
            if larger_window and candidate.context_window <= gear.context_window:
                continue
            if not _violations(candidate, strecke, lage):
                chain.append(candidate)
                if len(chain) == limit:
                    return chain
    return chain
