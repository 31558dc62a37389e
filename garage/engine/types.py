"""Plain data the engine works on, loaded from the tables by the services."""

from dataclasses import dataclass, field
from decimal import Decimal

MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class RoadSpec:
    slug: str
    label: str
    difficulty: float
    default_gear: str
    throttle: float
    pattern: str
    signals_en: tuple[str, ...] = ()
    signals_de: tuple[str, ...] = ()
    is_fallback: bool = False
    order: int = 0


@dataclass(frozen=True, slots=True)
class GearSpec:
    name: str
    provider: str
    provider_kind: str
    model_id: str
    tier: int
    input_price: Decimal = Decimal(0)
    output_price: Decimal = Decimal(0)
    cached_input_price: Decimal = Decimal(0)
    thinking_price: Decimal = Decimal(0)
    context_window: int = 200_000
    max_output_tokens: int = 8192
    reasoning: str = "none"
    label: str = ""
    enabled: bool = True
    simulated: bool = False

    @property
    def is_free(self) -> bool:
        return not (
            self.input_price or self.output_price or self.cached_input_price or self.thinking_price
        )

    def cost(
        self,
        input_tokens: int,
        output_tokens: int,
        cached_tokens: int = 0,
        thinking_tokens: int = 0,
    ) -> Decimal:
        """USD for one call; cached tokens are part of the input but billed at the cached price."""
        uncached = max(input_tokens - cached_tokens, 0)
        return (
            uncached * self.input_price
            + cached_tokens * self.cached_input_price
            + output_tokens * self.output_price
            + thinking_tokens * self.thinking_price
        ) / MILLION


@dataclass(frozen=True, slots=True)
class Strecke:
    """A task's analysis."""

    road: str
    confidence: float
    difficulty: float
    tempo: str  # "urgent" | "normal" | "thorough"
    stages: int
    items: tuple[str, ...] = ()
    signals: tuple[str, ...] = ()
    language: str = "en"  # "en" | "de"
    prompt_tokens: int = 0

    def as_dict(self) -> dict:
        return {
            "road": self.road,
            "confidence": round(self.confidence, 3),
            "difficulty": round(self.difficulty, 3),
            "tempo": self.tempo,
            "stages": self.stages,
            "items": list(self.items),
            "signals": list(self.signals),
            "language": self.language,
            "prompt_tokens": self.prompt_tokens,
        }


@dataclass(frozen=True, slots=True)
class Reason:
    """One step of a decision, structured so a page can show it and a test can check it."""

    step: str
    message: str
    data: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "step": self.step,
            "message": self.message,
            **({"data": self.data} if self.data else {}),
        }
