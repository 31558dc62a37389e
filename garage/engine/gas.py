"""Gas/Bremse: a throttle 0..1 becomes the parameters a gear's provider takes.

More throttle buys more output tokens, more thinking and more time; less gives short,
direct answers. The prompt strategy is written in the task's language.
"""

from dataclasses import dataclass

from garage.engine.types import GearSpec

ANSWER_TOKENS_MIN = 1024
ANSWER_TOKENS_MAX = 16384
THINKING_BUDGET_MIN = 1024  # Anthropic's smallest budget_tokens
THINKING_BUDGET_MAX = 32768
THINKING_FROM = 0.35  # below this the brake is on: no thinking at all

STRATEGIES = {
    "direct": {
        "en": "Answer directly and briefly. Do only what is asked; no preamble.",
        "de": "Antworte direkt und knapp. Erledige nur, was verlangt ist; keine Einleitung.",
    },
    "balanced": {
        "en": "Work through the task carefully and give a complete, well-structured answer.",
        "de": "Bearbeite die Aufgabe sorgfältig und gib eine vollständige, gut gegliederte Antwort.",
    },
    "thorough": {
        "en": (
            "Think the task through thoroughly: consider edge cases and alternatives, "
            "check your reasoning, then give a complete answer that explains its trade-offs."
        ),
        "de": (
            "Durchdenke die Aufgabe gründlich: berücksichtige Randfälle und Alternativen, "
            "prüfe deine Überlegungen und gib dann eine vollständige Antwort mit den Abwägungen."
        ),
    },
}


@dataclass(frozen=True, slots=True)
class Gas:
    """The reasoning parameters for one call; ``wert`` is the throttle they came from."""

    wert: float
    max_output_tokens: int
    strategy: str
    system_prompt: str
    timeout_s: float
    thinking_budget: int | None = None  # token-budget gears
    effort: str | None = None  # effort-level gears: "low" | "medium" | "high"
    think: bool | None = None  # Ollama's think flag

    def as_dict(self) -> dict:
        return {
            "wert": self.wert,
            "max_output_tokens": self.max_output_tokens,
            "strategy": self.strategy,
            "timeout_s": self.timeout_s,
            "thinking_budget": self.thinking_budget,
            "effort": self.effort,
            "think": self.think,
        }


def strategy_for(throttle: float) -> str:
    if throttle < THINKING_FROM:
        return "direct"
    return "balanced" if throttle < 0.75 else "thorough"


def effort_for(throttle: float) -> str:
    if throttle < THINKING_FROM:
        return "low"
    return "medium" if throttle < 0.7 else "high"


def gas_geben(
    gear: GearSpec, throttle: float, *, language: str = "en", base_timeout_s: float = 120.0
) -> Gas:
    """Translate ``throttle`` into the parameters ``gear`` understands."""
    throttle = min(max(float(throttle), 0.0), 1.0)
    answer = int(ANSWER_TOKENS_MIN + throttle * (ANSWER_TOKENS_MAX - ANSWER_TOKENS_MIN))
    budget = effort = think = None
    if gear.reasoning == "budget" and throttle >= THINKING_FROM:
        share = (throttle - THINKING_FROM) / (1 - THINKING_FROM)
        budget = int(THINKING_BUDGET_MIN + share * (THINKING_BUDGET_MAX - THINKING_BUDGET_MIN))
    elif gear.reasoning == "effort":
        effort = effort_for(throttle)
    elif gear.reasoning == "think":
        think = throttle >= THINKING_FROM
    # A thinking budget is spent inside max_tokens, so the cap covers both.
    max_tokens = answer + (budget or 0)
    if max_tokens > gear.max_output_tokens:
        max_tokens = gear.max_output_tokens
        if budget is not None:
            # Keep room for the answer; drop thinking if the gear is too small for both.
            budget = max_tokens - min(answer, max_tokens // 2)
            if budget < THINKING_BUDGET_MIN:
                budget = None
    strategy = strategy_for(throttle)
    lang = language if language in ("en", "de") else "en"
    return Gas(
        wert=round(throttle, 3),
        max_output_tokens=max_tokens,
        strategy=strategy,
        system_prompt=STRATEGIES[strategy][lang],
        timeout_s=round(base_timeout_s * (1 + throttle), 1),
        thinking_budget=budget,
        effort=effort,
        think=think,
    )
