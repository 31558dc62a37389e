"""Replay: the Prüfstand answering with recorded outcomes instead of invented text.

For a prompt of a RouterBench-format table, a gear mapped to one of the table's models returns
that model's recorded answer and cost; whether the answer was correct travels in
``Antwort.extra["correct"]`` (True, False, or None where the table has no score). It speaks
the MotorBlock contract, ``call(anfrage, on_delta) -> Antwort``, and is always simulated.

Two ways in:
- ``with replay.installed(): fahrer.fahren(prompt)`` makes it the process's Prüfstand, so
  every simulated gear is answered from the table with the exact recorded cost;
- ``fahrer.fahren(prompt, handler=replay.handler)`` replaces the provider call; the Fahrt then
  prices the call from the gear's token prices, so the recorded cost is only approximated.
"""

import contextlib
from collections.abc import Iterator, Mapping
from decimal import Decimal

from garage.motorblock import registry
from garage.motorblock.base import (
    Anfrage,
    Antwort,
    DeltaHandler,
    ErrorKind,
    MotorError,
    Stoppuhr,
    Usage,
)
from garage.routerbench import ModelGear, Table

USD_PLACES = Decimal("0.00000001")


class Replay:
    """Answers a gear's call with the recorded outcome of the model it is mapped to."""

    def __init__(self, table: Table, mapping: tuple[ModelGear, ...]) -> None:
        self.table = table
        self.model_of: Mapping[str, str] = {m.gear: m.model for m in mapping}
        self.calls = 0

    def lookup(self, prompt: str, gear: str) -> tuple[str, str, float, bool | None]:
        """(model, answer, cost, correct) for a prompt of the table on a mapped gear."""
        model = self.model_of.get(gear)
        if model is None:
            raise MotorError(
                ErrorKind.UNAVAILABLE,
                f"gear {gear!r} is not mapped to a model of the replayed table",
            )
        row = self.table.row(prompt)
        if row is None:
            raise MotorError(
                ErrorKind.INVALID_REQUEST, "prompt not found in the replayed table (replay)"
            )
        score = row.scores[model]
        return model, row.responses[model], row.costs[model], None if score is None else score >= 1

    async def call(self, anfrage: Anfrage, on_delta: DeltaHandler | None = None) -> Antwort:
        uhr = Stoppuhr()
        self.calls += 1
        prompt = anfrage.prompt_text
        model, text, cost, correct = self.lookup(prompt, anfrage.gear.name)
        uhr.tick()
        if on_delta and text:
            on_delta("text", text)
        return Antwort(
            text=text,
            usage=Usage(
                input_tokens=max(1, len(prompt) // 4), output_tokens=max(1, len(text) // 4)
            ),
            cost_usd=Decimal(repr(cost)).quantize(USD_PLACES),
            latency_ms=uhr.latency_ms,
            ttft_ms=uhr.ttft_ms,
            stop_reason="end_turn",
            simulated=True,
            extra={"correct": correct, "model": model, "replay": True},
        )

    def handler(self, prompt: str, config: dict) -> dict:
        """The Fahrer's ``handler(prompt, config)`` form of a replayed call."""
        _, text, _, _ = self.lookup(prompt, config["gear"])
        return {"output": text}


@contextlib.contextmanager
def installed(replay: Replay) -> Iterator[Replay]:
    """Make ``replay`` the process's Prüfstand for the duration of the block."""
    before = registry._default_pruefstand
    registry._default_pruefstand = replay
    try:
        yield replay
    finally:
        registry._default_pruefstand = before
