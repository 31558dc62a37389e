"""Prüfstand: a simulated provider for demos, benchmarks and fault drills.

Deterministic text for the same task and gear, realistic token counts and latency per tier,
and faults on request. Everything it produces is marked simulated.
"""

import asyncio
import hashlib
import os
import random
from dataclasses import dataclass

from garage.motorblock.base import (
    Anfrage,
    Antwort,
    DeltaHandler,
    ErrorKind,
    MotorError,
    Stoppuhr,
    Usage,
)

# Realistic shape per tier: time to first token (ms) and output speed (tokens/s).
TTFT_MS = {1: 300, 2: 400, 3: 700, 4: 900, 5: 1300}
TOKENS_PER_S = {1: 180, 2: 160, 3: 90, 4: 70, 5: 50}

FAULTS = {
    "overloaded": (ErrorKind.RETRYABLE, 529, "Overloaded (simulated)"),
    "rate_limit": (ErrorKind.RETRYABLE, 429, "Rate limit reached (simulated)"),
    "server_error": (ErrorKind.RETRYABLE, 500, "Internal server error (simulated)"),
    "cut_stream": (ErrorKind.RETRYABLE, None, "Stream ended before its final event (simulated)"),
    "timeout": (ErrorKind.RETRYABLE, None, "No answer within the timeout (simulated)"),
    "credentials": (ErrorKind.CREDENTIALS, 401, "Invalid API key (simulated)"),
    "invalid_request": (ErrorKind.INVALID_REQUEST, 400, "Invalid request (simulated)"),
    "context_too_long": (ErrorKind.CONTEXT_TOO_LONG, 400, "Prompt is too long (simulated)"),
}

OPENINGS = {
    "en": ["Here is how I would approach this.", "Plan:", "Summary of the change:", "Answer:"],
    "de": ["So würde ich vorgehen.", "Plan:", "Zusammenfassung der Änderung:", "Antwort:"],
}
STEPS = {
    "en": [
        "Read the relevant code and pin down the expected behaviour.",
        "Make the smallest change that fixes the cause, not the symptom.",
        "Add a test that fails before the change and passes after it.",
        "Check the edge cases: empty input, very large input, concurrent use.",
        "Update the documentation where behaviour changed.",
        "Measure before and after, and keep the numbers.",
    ],
    "de": [
        "Den betroffenen Code lesen und das erwartete Verhalten festhalten.",
        "Die kleinste Änderung machen, die die Ursache behebt.",
        "Einen Test ergänzen, der vorher scheitert und danach besteht.",
        "Randfälle prüfen: leere Eingabe, sehr große Eingabe, gleichzeitige Nutzung.",
        "Die Dokumentation anpassen, wo sich Verhalten ändert.",
        "Vorher und nachher messen und die Zahlen festhalten.",
    ],
}


@dataclass(frozen=True)
class Pruefplan:
    """How the Prüfstand behaves: latency scale and injected faults."""

    latency_scale: float = 1.0  # 0 answers at once; 1 is realistic per tier
    error_rate: float = 0.0
    error_kinds: tuple[str, ...] = ("overloaded",)
    slow_first_byte_ms: int = 0
    fail_first: int = 0  # the first N calls fail with error_kinds[0] (fault drills)
    fixed_latency_ms: int | None = None  # every call takes exactly this long (benchmarks)

    @classmethod
    def parse(cls, spec: dict) -> "Pruefplan":
        """From a dict like {"error_rate": 0.2, "error_kinds": ["timeout"], ...}; raises ValueError."""
        kinds = spec.get("error_kinds", cls.error_kinds)
        if isinstance(kinds, str):
            kinds = [k for k in kinds.replace("|", ",").split(",") if k]
        unknown = [k for k in kinds if k not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; use: {', '.join(FAULTS)}")
        plan = cls(
            latency_scale=float(spec.get("latency_scale", cls.latency_scale)),
            error_rate=float(spec.get("error_rate", 0.0)),
            error_kinds=tuple(kinds) or cls.error_kinds,
            slow_first_byte_ms=int(spec.get("slow_first_byte_ms", 0)),
            fail_first=int(spec.get("fail_first", 0)),
            fixed_latency_ms=(
                int(spec["fixed_latency_ms"]) if spec.get("fixed_latency_ms") is not None else None
            ),
        )
        if not 0 <= plan.error_rate <= 1 or plan.latency_scale < 0 or plan.slow_first_byte_ms < 0:
            raise ValueError("error_rate must be 0–1; latency_scale and slow_first_byte_ms ≥ 0")
        return plan

    @classmethod
    def from_env(cls) -> "Pruefplan":
        spec: dict = {}
        if "CLUTCH_PRUEFSTAND_LATENCY" in os.environ:
            spec["latency_scale"] = os.environ["CLUTCH_PRUEFSTAND_LATENCY"]
        for part in os.environ.get("CLUTCH_PRUEFSTAND_FAULTS", "").split(";"):
            if "=" in part:
                key, _, value = part.partition("=")
                spec[key.strip()] = value.strip()
        return cls.parse(spec)


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big")


def simulated_text(task: str, gear: str, language: str, output_tokens: int) -> str:
    """Deterministic text of roughly ``output_tokens`` tokens for this task and gear."""
    rng = random.Random(_seed(task, gear))
    lang = language if language in OPENINGS else "en"
    first_line = task.strip().splitlines()[0][:120] if task.strip() else "the task"
    label = "Simulierte Antwort" if lang == "de" else "Simulated answer"
    lines = [f"[{label} · Prüfstand · {gear}]", f"{rng.choice(OPENINGS[lang])} {first_line}"]
    words = sum(len(line.split()) for line in lines)
    n, order = 1, []
    while words * 4 // 3 < output_tokens:
        if not order:  # every step once before any repeats, in a new order each round
            order = rng.sample(STEPS[lang], len(STEPS[lang]))
            if n > 1:
                lines.append(f"({'Nächste Runde' if lang == 'de' else 'Next pass'})")
        step = order.pop()
        lines.append(f"{n}. {step}")
        words += len(step.split()) + 1
        n += 1
    return "\n".join(lines)


class Pruefstand:
    def __init__(self, plan: Pruefplan | None = None) -> None:
        self.plan = plan or Pruefplan.from_env()
        self.calls = 0

    def _fault(self, rng: random.Random) -> str | None:
        count, self.calls = self.calls, self.calls + 1
        if count < self.plan.fail_first:
            return self.plan.error_kinds[0]
        if self.plan.error_rate and rng.random() < self.plan.error_rate:
            return rng.choice(self.plan.error_kinds)
        return None

    async def call(self, anfrage: Anfrage, on_delta: DeltaHandler | None = None) -> Antwort:
        uhr = Stoppuhr()
        gear, gas, plan = anfrage.gear, anfrage.gas, self.plan
        prompt = anfrage.prompt_text
        rng = random.Random(_seed(prompt, gear.name, str(self.calls)))
        fault = self._fault(rng)

        if plan.fixed_latency_ms is not None:
            first_byte_s = (plan.fixed_latency_ms + plan.slow_first_byte_ms) / 1000
        else:
            first_byte_s = (
                TTFT_MS.get(gear.tier, 600) * plan.latency_scale + plan.slow_first_byte_ms
            ) / 1000
        if fault == "timeout" or first_byte_s > gas.timeout_s:
            await asyncio.sleep(min(first_byte_s, gas.timeout_s))
            raise MotorError(
                ErrorKind.RETRYABLE, f"No first byte within {gas.timeout_s:.1f} s (simulated)"
            )
        await asyncio.sleep(first_byte_s)
        if fault and fault != "cut_stream":
            kind, status, message = FAULTS[fault]
            raise MotorError(
                kind, message, status=status, retry_after=1.0 if fault == "rate_limit" else None
            )

        wanted = 120 + int(700 * gas.wert) + rng.randrange(160)
        output_tokens = max(1, min(wanted, gas.max_output_tokens))
        text = simulated_text(prompt, gear.name, anfrage.language, output_tokens)
        thinking_tokens = 0
        if gas.thinking_budget:
            thinking_tokens = min(
                gas.thinking_budget, int(gas.thinking_budget * (0.3 + 0.5 * gas.wert))
            )
        elif gas.effort or gas.think:
            thinking_tokens = int(output_tokens * (0.5 + gas.wert))

        per_token_s = (
            0.0
            if plan.fixed_latency_ms is not None
            else plan.latency_scale / TOKENS_PER_S.get(gear.tier, 100)
        )
        words = text.split(" ")
        chunks = [
            " ".join(words[i : i + 12]) + (" " if i + 12 < len(words) else "")
            for i in range(0, len(words), 12)
        ]
        cut_at = len(chunks) // 2 if fault == "cut_stream" else None
        for i, chunk in enumerate(chunks):
            if cut_at is not None and i == cut_at:
                raise MotorError(ErrorKind.RETRYABLE, FAULTS["cut_stream"][2])
            uhr.tick()
            if on_delta:
                on_delta("text", chunk)
            if per_token_s:
                await asyncio.sleep(per_token_s * max(1, len(chunk) // 4))
        uhr.tick()
        usage = Usage(
            input_tokens=max(1, (len(prompt) + len(anfrage.system)) // 4),
            output_tokens=output_tokens,
            thinking_tokens=thinking_tokens,
        )
        return Antwort(
            text=text,
            usage=usage,
            cost_usd=usage.cost_on(gear),
            latency_ms=uhr.latency_ms,
            ttft_ms=uhr.ttft_ms,
            stop_reason="end_turn",
            simulated=True,
        )
