"""The call layer's contract: a request in, a stream of deltas out, then usage and timings.

Every provider raises ``MotorError`` with one of the kinds below; the engine acts on the kind
(retry, fail over, mark credentials bad, fail fast), never on a provider's own exception.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from garage.engine.gas import Gas
from garage.engine.types import GearSpec


class ErrorKind:
    RETRYABLE = "retryable"  # timeouts, connection errors, 429, 5xx, 529, a stream cut short
    CREDENTIALS = "credentials"  # 401/403: the provider is misconfigured
    INVALID_REQUEST = "invalid_request"  # 400: fail fast with the provider's message
    CONTEXT_TOO_LONG = "context_too_long"  # fail over to a gear with a larger window
    UNAVAILABLE = "unavailable"  # the provider cannot run here (binary or model missing)
    CANCELLED = "cancelled"
    BUDGET = "budget"  # the Tankuhr refused the reservation


class MotorError(Exception):
    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind, self.message, self.status, self.retry_after = kind, message, status, retry_after

    @property
    def retryable(self) -> bool:
        return self.kind == ErrorKind.RETRYABLE

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "message": self.message,
            "status": self.status,
            "retry_after": self.retry_after,
        }


@dataclass(frozen=True)
class ProviderConfig:
    """Where and how to reach a provider. The key is resolved at call time and lives only
    here, in memory; ``__repr__`` hides it so it cannot reach a log or a trip record."""

    name: str
    kind: str
    base_url: str = ""
    api_key: str = field(default="", repr=False)
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 120.0
    max_concurrency: int = 8


@dataclass(frozen=True)
class Anfrage:
    """One call: the conversation, the system prompt and the reasoning parameters."""

    gear: GearSpec
    messages: tuple[dict, ...]  # [{"role": "user" | "assistant", "content": str}]
    gas: Gas
    system: str = ""
    language: str = "en"
    simulated: bool = False
    provider: ProviderConfig | None = None

    @property
    def prompt_text(self) -> str:
        return "\n\n".join(m["content"] for m in self.messages)


@dataclass
class Usage:
    """Token counts of one call, the same way for every provider:

    - ``input_tokens``: the whole prompt, cached part included;
    - ``cached_tokens``: the part of the input read from the provider's cache;
    - ``output_tokens``: visible output, thinking excluded where the provider says how much
      of its output was thinking (otherwise all of it);
    - ``thinking_tokens``: reasoning tokens the provider reported separately.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    thinking_tokens: int = 0

    def cost_on(self, gear: GearSpec) -> Decimal:
        """What these tokens cost at ``gear``'s prices."""
        return gear.cost(
            self.input_tokens, self.output_tokens, self.cached_tokens, self.thinking_tokens
        )

    def as_dict(self) -> dict:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "thinking_tokens": self.thinking_tokens,
        }


@dataclass
class Antwort:
    """What a finished call produced."""

    text: str
    usage: Usage
    cost_usd: Decimal
    latency_ms: int
    ttft_ms: int | None
    thinking: str = ""
    stop_reason: str = ""
    simulated: bool = False
    extra: dict = field(default_factory=dict)


# Called with ("text" | "thinking", delta) as the stream arrives.
DeltaHandler = Callable[[str, str], None]


class Stoppuhr:
    """Times a call: time to first token and total latency, in milliseconds."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first: float | None = None

    def tick(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()

    @property
    def ttft_ms(self) -> int | None:
        return None if self.first is None else int((self.first - self.start) * 1000)

    @property
    def latency_ms(self) -> int:
        return int((time.perf_counter() - self.start) * 1000)
