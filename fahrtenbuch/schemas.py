"""One In/Out schema per operation of the trip API."""

from datetime import datetime
from typing import Any, Literal

from ninja import Field, Schema

Pattern = Literal["single", "convoy", "team", "swarm", "hybrid"]
Tempo = Literal["urgent", "normal", "thorough"]
TripStatusName = Literal["queued", "running", "succeeded", "failed", "cancelled", "refused"]


class TripIn(Schema):
    task: str = Field(..., description="What clutch should do.")
    gear: str | None = Field(None, description="Use this gear (by name) instead of choosing one.")
    throttle: float | None = Field(None, ge=0, le=1, description="Reasoning level 0–1.")
    pattern: Pattern | None = None
    tempo: Tempo | None = None
    steps: list[str] | None = Field(None, description="Convoy steps, in order.")
    members: list[str] | None = Field(None, description="Team members' specialities.")
    items: list[str] | None = Field(None, description="Swarm items, one leg each.")
    concurrency: int | None = Field(None, ge=1, le=256, description="Parallel legs at most.")
    item_timeout_s: float | None = Field(None, gt=0, le=3600, description="Per-item timeout.")
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)
    pruefstand: dict[str, Any] | None = Field(
        None, description='Fault plan for simulated gears, e.g. {"error_rate": 0.2}.'
    )

    def options(self) -> dict:
        return self.model_dump(exclude={"task", "idempotency_key"}, exclude_none=True)


class RunIn(TripIn):
    wait_s: float = Field(60, gt=0, le=600, description="How long to wait for the result.")

    def options(self) -> dict:
        return self.model_dump(exclude={"task", "idempotency_key", "wait_s"}, exclude_none=True)


class GearRef(Schema):
    name: str
    provider: str
    model_id: str
    tier: int
    simulated: bool


class ReasonOut(Schema):
    step: str
    message: str
    data: dict = {}


class DecisionOut(Schema):
    road: str
    confidence: float
    difficulty: float
    tempo: str
    stages: int
    gear: GearRef | None
    throttle: float
    pattern: str
    zone: str
    explored: bool
    refused: str | None
    legs: int
    reasons: list[ReasonOut]
    estimated_cost_usd: str


class UsageOut(Schema):
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    thinking_tokens: int


class LegOut(Schema):
    position: int
    phase: int
    role: str
    title: str
    gear: str = Field(..., alias="gear_name")
    status: str
    output: str
    error: str
    error_kind: str
    attempts: list[dict]
    input_tokens: int
    output_tokens: int
    thinking_tokens: int
    cost_usd: str
    latency_ms: int | None
    ttft_ms: int | None
    simulated: bool


class TripOut(Schema):
    id: int
    user: str | None
    status: TripStatusName
    task: str
    road: str
    gear: str
    throttle: float | None
    pattern: str
    tempo: str
    zone: str
    explored: bool
    simulated: bool
    reasons: list[ReasonOut]
    output: str
    error: str
    error_kind: str
    usage: UsageOut
    estimated_cost_usd: str
    cost_usd: str
    latency_ms: int | None
    ttft_ms: int | None
    retries: int
    failovers: int
    anomalies: list[dict]
    feedback: int | None
    feedback_note: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class TripDetailOut(TripOut):
    legs: list[LegOut]


class SubmitOut(Schema):
    trip: TripOut
    decision: DecisionOut
    created: bool


class RunOut(Schema):
    finished: bool
    message: str
    trip: TripDetailOut


class TripPageOut(Schema):
    items: list[TripOut]
    next_before: int | None = Field(None, description="Pass as ?before= for the next page.")


class FeedbackIn(Schema):
    thumbs: Literal[1, -1] = Field(..., description="1 thumbs up, -1 thumbs down.")
    note: str = Field("", max_length=5000, description="A correction or comment.")


class ErrorOut(Schema):
    detail: str
