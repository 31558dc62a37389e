"""Kickdown: ask cheap gears first, and the strongest gear only when they do not agree.

For a prompt whose answer is a choice (the prompt says ``Print only a single choice from "A"
or "B" …``), a kickdown chain asks its cheap gears one after another. When one gives no
recognisable letter, or a letter other than the first one's, the trip kicks down to the top
gear and returns its answer; when all cheap gears agree, their answer stands. Free-text
answers (code, prose) cannot be compared, so they never kick down.

What a chain is worth is measured on the trip log: for each answer kind, every chain of one to
``MAX_CHEAP`` cheaper gears (in order of their mean cost) before the kind's most accurate gear
is replayed on the logged prompts that every gear of the chain answered. Its accuracy and mean
cost are weighed, by the same λ as the Lernrouter's, against every single gear measured on the
same kind of prompt: the kickdown is proposed when the best chain beats the best single gear.

Plain Python: no Django, no ORM.
"""

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

TEXT = "text"
MAX_CHEAP = 3
MIN_PROMPTS = 20  # logged prompts a chain must be measured on before it is offered

_CHOICE = re.compile(r'Print only a single choice\s+from\s+((?:"[A-Z]"(?:\s+or\s+)?)+)')
_LETTER = re.compile(r'"([A-Z])"')
_LEADING = re.compile(r"^\(?([A-Z])\)?(?:[\s.):,]|$)")


def answer_kind(prompt: str) -> str:
    """``choice:ABCD``-style for a prompt that asks for one letter (its last such instruction:
    few-shot examples come before the question), else ``text``."""
    found = _CHOICE.findall(prompt)
    if not found:
        return TEXT
    return "choice:" + "".join(_LETTER.findall(found[-1]))


def letters_of(kind: str) -> str:
    return kind.split(":", 1)[1] if kind.startswith("choice:") else ""


def normalise(answer: str | None, kind: str) -> str | None:
    """The chosen letter of an answer, or None when there is none to recognise: a leading
    ``A``, ``A)``, ``A.`` or ``(A)`` if it is an allowed letter, else the first allowed letter
    standing alone."""
    letters = letters_of(kind)
    if not letters or not answer:
        return None
    text = answer.strip()
    lead = _LEADING.match(text)
    if lead and lead.group(1) in letters:
        return lead.group(1)
    alone = re.search(rf"\b([{letters}])\b", text)
    return alone.group(1) if alone else None


def describe_kind(kind: str) -> str:
    letters = letters_of(kind)
    return f"choice {'/'.join(letters)}" if letters else "free-text"


# --- what the cheap gears' answers decide --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """After the cheap gears answered: accept their letter, or kick down (and why)."""

    accept: bool
    letter: str | None
    why: str


def verdict(answers: Sequence[tuple[str, str | None]], complete: bool) -> Verdict | None:
    """``answers``: (gear, letter) in the order asked. None while the answers so far agree and
    more cheap gears are to come (``complete`` False)."""
    first_gear, first = answers[0]
    last_gear, last = answers[-1]
    if last is None:
        return Verdict(False, None, f"{last_gear} gave no recognisable answer")
    if last != first:
        agreed = [g for g, _ in answers[:-1]]
        return Verdict(
            False, None, f"{_names(agreed)} and {last_gear} disagreed ({first} vs {last})"
        )
    if not complete:
        return None
    if len(answers) == 1:
        return Verdict(True, first, f"{first_gear} answered {first}")
    return Verdict(True, first, f"{_names([g for g, _ in answers])} agree ({first})")


def _names(gears: Sequence[str]) -> str:
    return gears[0] if len(gears) == 1 else ", ".join(gears[:-1]) + " and " + gears[-1]


# --- chains learned from the trip log ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """One logged answer: a gear's answer to a prompt, whether it was good, and its cost."""

    prompt: str
    gear: str
    answer: str
    success: float | None  # None: not judged
    cost_usd: float


@dataclass(frozen=True, slots=True)
class Chain:
    kind: str
    cheap: tuple[str, ...]
    top: str
    accuracy: float  # on the logged prompts of the kind
    cost_usd: float  # mean cost per prompt, the top gear's when it kicks down included
    kickdown_rate: float
    prompts: int

    @property
    def gears(self) -> tuple[str, ...]:
        return (*self.cheap, self.top)

    def utility(self, lam: float, reference_cost_usd: float) -> float:
        return self.accuracy - lam * self.cost_usd / reference_cost_usd

    def describe(self) -> str:
        return f"{' → '.join(self.cheap)}, else {self.top}"

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "cheap": list(self.cheap),
            "top": self.top,
            "accuracy": round(self.accuracy, 4),
            "cost_usd": round(self.cost_usd, 8),
            "kickdown_rate": round(self.kickdown_rate, 4),
            "prompts": self.prompts,
        }


@dataclass(frozen=True, slots=True)
class Single:
    """One gear alone, measured on the logged prompts of a kind."""

    gear: str
    accuracy: float
    cost_usd: float
    prompts: int

    def utility(self, lam: float, reference_cost_usd: float) -> float:
        return self.accuracy - lam * self.cost_usd / reference_cost_usd


@dataclass
class Schaltplan:
    """Every measured chain and single gear per answer kind."""

    chains: dict[str, list[Chain]] = field(default_factory=dict)
    singles: dict[str, list[Single]] = field(default_factory=dict)

    def choose(
        self, kind: str, lam: float, reference_cost_usd: float, allowed: Iterable[str]
    ) -> tuple[Chain | None, Single | None]:
        """(the best allowed chain if it beats every allowed single gear on this kind, else
        None; the best allowed single gear)."""
        allowed = set(allowed)
        chain = self.best(kind, lam, reference_cost_usd, allowed)
        usable = [s for s in self.singles.get(kind, ()) if s.gear in allowed]
        single = max(
            usable, key=lambda s: (s.utility(lam, reference_cost_usd), -s.cost_usd), default=None
        )
        if chain is None or (
            single is not None
            and single.utility(lam, reference_cost_usd) >= chain.utility(lam, reference_cost_usd)
        ):
            return None, single
        return chain, single

    def best(
        self, kind: str, lam: float, reference_cost_usd: float, allowed: Iterable[str]
    ) -> Chain | None:
        """The chain of highest utility among those whose gears are all allowed; None when the
        kind has none (free text), or its top gear is not allowed."""
        allowed = set(allowed)
        usable = [c for c in self.chains.get(kind, ()) if set(c.gears) <= allowed]
        if not usable:
            return None
        return max(usable, key=lambda c: (c.utility(lam, reference_cost_usd), -c.cost_usd, c.cheap))

    def summary(self) -> dict:
        return {
            kind: {"top": chains[0].top, "chains": len(chains)}
            for kind, chains in self.chains.items()
            if chains
        }


def learn(
    outcomes: Iterable[Outcome], *, max_cheap: int = MAX_CHEAP, min_prompts: int = MIN_PROMPTS
) -> Schaltplan:
    """Measure every chain of every choice kind on the logged outcomes (see the module)."""
    by_prompt: dict[str, dict[str, Outcome]] = {}
    for o in outcomes:
        by_prompt.setdefault(o.prompt, {}).setdefault(o.gear, o)  # a repeat keeps the first
    by_kind: dict[str, list[dict[str, tuple[str | None, float | None, float]]]] = {}
    for prompt, answers in by_prompt.items():
        kind = answer_kind(prompt)
        if kind == TEXT:
            continue
        by_kind.setdefault(kind, []).append(
            {g: (normalise(o.answer, kind), o.success, o.cost_usd) for g, o in answers.items()}
        )
    plan = Schaltplan()
    for kind, rows in sorted(by_kind.items()):
        singles = _singles(rows, min_prompts)
        chains = _chains(kind, rows, singles, max_cheap, min_prompts)
        if chains:
            plan.chains[kind], plan.singles[kind] = chains, singles
    return plan


def _singles(rows: list[dict], min_prompts: int) -> list[Single]:
    singles = []
    for g in sorted({g for row in rows for g in row}):
        judged = [row[g][1] for row in rows if g in row and row[g][1] is not None]
        costs = [row[g][2] for row in rows if g in row]
        if len(judged) >= min_prompts:
            singles.append(
                Single(g, sum(judged) / len(judged), sum(costs) / len(costs), len(costs))
            )
    return singles


def _chains(
    kind: str, rows: list[dict], singles: list[Single], max_cheap: int, min_prompts: int
) -> list[Chain]:
    accuracy = {s.gear: s.accuracy for s in singles}
    cost = {s.gear: s.cost_usd for s in singles}
    if len(accuracy) < 2:
        return []
    top = max(accuracy, key=lambda g: (accuracy[g], -cost[g], g))
    cheaper = sorted((g for g in accuracy if cost[g] < cost[top]), key=lambda g: (cost[g], g))
    chains = []
    for size in range(1, max_cheap + 1):
        for cheap in itertools.combinations(cheaper, size):
            chain = _measure(kind, cheap, top, rows)
            if chain is not None and chain.prompts >= min_prompts:
                chains.append(chain)
    return chains


def _measure(kind: str, cheap: tuple[str, ...], top: str, rows: list[dict]) -> Chain | None:
    gears = (*cheap, top)
    good = judged = prompts = kicked = 0
    spent = 0.0
    for row in rows:
        if any(g not in row for g in gears):
            continue
        prompts += 1
        first = row[cheap[0]][0]
        answered_by = cheap[0]
        for g in cheap:
            letter, _, cost = row[g]
            spent += cost
            if letter is None or letter != first:
                answered_by = top
                spent += row[top][2]
                kicked += 1
                break
        success = row[answered_by][1]
        if success is not None:
            judged += 1
            good += success
    if not prompts or not judged:
        return None
    return Chain(kind, cheap, top, good / judged, spent / prompts, kicked / prompts, prompts)
