"""Driving a decided trip: its phases of legs, retries, failover, budget, breakers, events.

One async driver for all five patterns: a trip is a list of phases run in order; the legs of
a phase run concurrently (bounded), and a phase's outputs feed the next phase's prompts.
single = one leg; convoy = one leg per phase; team = members, then a merge; swarm = items,
then a local aggregation; hybrid = a team phase, its merge, then a finishing step.
A single trip with a kickdown chain drives its legs one phase after another, each on its own
gear, and stops at the first missing answer or disagreement to drive the top gear.
"""

import asyncio
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from asgiref.sync import sync_to_async
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from clutch_site.rows import update_many
from fahrtenbuch import services as log
from fahrtenbuch.models import Leg, LegStatus, Trip, TripStatus
from garage import bordcomputer, getriebe, kickdown, tankuhr
from garage.engine.gas import Gas, gas_geben
from garage.engine.kupplung import Lage, failover_chain
from garage.engine.types import GearSpec, Strecke
from garage.models import Gear, Provider
from garage.motorblock import registry
from garage.motorblock.base import Anfrage, Antwort, ErrorKind, MotorError, Usage
from garage.motorblock.pruefstand import Pruefstand

db = sync_to_async

MAX_RETRIES = int(os.environ.get("CLUTCH_MAX_RETRIES", "2"))
RETRY_BASE_S = float(os.environ.get("CLUTCH_RETRY_BASE_S", "0.5"))
RETRY_AFTER_CAP_S = 30.0
FLUSH_EVERY_S = 0.1
FLUSH_CHARS = 400
WATCH_EVERY_S = 0.5
# Recovery takes a trip as orphaned after CLUTCH_STALE_AFTER_S (30 s): keep this well below it.
HEARTBEAT_EVERY_S = float(os.environ.get("CLUTCH_HEARTBEAT_S", "5"))
DEFAULT_MEMBERS = {
    "en": ["implementation", "tests", "review"],
    "de": ["Implementierung", "Tests", "Review"],
}


@dataclass
class LegPlan:
    role: str
    title: str
    prompt: Callable[[list[str]], str]  # from the previous phase's outputs


@dataclass
class Phase:
    legs: list[LegPlan]
    partial_ok: bool = False  # swarm items and team members may fail one by one
    aggregate: Callable[[list[tuple[LegPlan, str | None]]], str] | None = None


def _items(strecke: Strecke, options: dict, key: str) -> list[str]:
    given = options.get(key) or []
    return [str(x) for x in given] if given else list(strecke.items)


def plan_phases(task: str, pattern: str, strecke: Strecke, options: dict) -> list[Phase]:
    de = strecke.language == "de"
    if pattern == "convoy":
        steps = _items(strecke, options, "steps") or [task]
        phases, count = [], len(steps)
        for i, step in enumerate(steps):

            def prompt(prev: list[str], i=i, step=step, n=count) -> str:
                before = f"\n\nResult of the previous step:\n{prev[0]}" if prev else ""
                return f"{task}\n\nStep {i + 1} of {n}: {step}{before}"

            phases.append(Phase([LegPlan("step", step, prompt)]))
        return phases
    if pattern in ("team", "hybrid"):
        members = _items(strecke, options, "members") or DEFAULT_MEMBERS["de" if de else "en"]
        team = Phase(
            [
                LegPlan(
                    "member",
                    m,
                    lambda prev, m=m: (
                        f"You are the {m} specialist in a team working on this task:\n\n{task}\n\n"
                        f"Contribute your part: {m}."
                    ),
                )
                for m in members
            ],
            partial_ok=True,
        )
        merge = Phase(
            [
                LegPlan(
                    "merge",
                    "merge",
                    lambda prev: (
                        f"Merge the team's contributions into one coherent answer to the task:\n\n{task}\n\n"
                        + "\n\n".join(
                            f"--- contribution {i + 1} ---\n{p}" for i, p in enumerate(prev)
                        )
                    ),
                )
            ]
        )
        if pattern == "team":
            return [team, merge]
        finish = Phase(
            [
                LegPlan(
                    "step",
                    "finish",
                    lambda prev: (
                        f"Review and finish this result for the task below; fix gaps and inconsistencies.\n\n"
                        f"Task:\n{task}\n\nResult:\n{prev[0] if prev else ''}"
                    ),
                )
            ]
        )
        return [team, merge, finish]
    if pattern == "swarm":
        items = _items(strecke, options, "items") or [task]
        return [
            Phase(
                [
                    LegPlan(
                        "item",
                        item,
                        lambda prev, item=item: (
                            f"{task}\n\nDo this for exactly one item and answer only for it: {item}"
                        ),
                    )
                    for item in items
                ],
                partial_ok=True,
                aggregate=lambda results: "\n\n".join(
                    f"## {plan.title}\n{text if text is not None else '(failed)'}"
                    for plan, text in results
                ),
            )
        ]
    return [Phase([LegPlan("single", "", lambda prev: task)])]


@dataclass
class Totals:
    usage: Usage = field(default_factory=Usage)
    cost: Decimal = Decimal(0)
    retries: int = 0
    failovers: int = 0
    simulated: bool = False
    failover_reasons: list[dict] = field(default_factory=list)

    def add(self, antwort: Antwort) -> None:
        u = antwort.usage
        self.usage.input_tokens += u.input_tokens
        self.usage.output_tokens += u.output_tokens
        self.usage.cached_tokens += u.cached_tokens
        self.usage.thinking_tokens += u.thinking_tokens
        self.cost += antwort.cost_usd
        self.simulated = self.simulated or antwort.simulated


class BreakerOpen(Exception):
    pass


@dataclass(frozen=True)
class Kickdown:
    """Cheap gears asked in order, then the top gear on a missing answer or a disagreement."""

    cheap: tuple[GearSpec, ...]
    top: GearSpec


# What a succeeded call writes on its leg (see Fahrt._fill_leg).
LEG_DONE_FIELDS = [
    "gear",
    "gear_name",
    "status",
    "output",
    "attempts",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "thinking_tokens",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
    "simulated",
    "started_at",
    "finished_at",
]


class Sammelfahrt:
    """The ledger and leg writes of concurrent legs, done together (group commit).

    Legs queue what they need written (``await sammel("admit", ...)``); whatever queued
    while one batch was running goes to the database thread as the next batch, handled kind
    by kind by a handler that takes the whole list (one budget lock, one insert, one update
    for twenty reservations), in one transaction. A swarm item paid a database hop and
    several statements per reservation and per settlement; now a batch pays them once.

    A leg cancelled while its request was queued or running (its item timed out) does not
    see the result: the kind's ``undo`` gets it (a reservation nobody will settle is released).
    """

    def __init__(
        self,
        handlers: dict[str, Callable[[list], list[tuple[bool, object]]]],
        undo: dict[str, Callable[[list], None]],
    ) -> None:
        self.handlers, self.undo = handlers, undo
        self.queued: list[tuple[str, object, asyncio.Future]] = []
        self.drainer: asyncio.Task | None = None

    async def __call__(self, kind: str, payload: object):
        future = asyncio.get_running_loop().create_future()
        self.queued.append((kind, payload, future))
        if self.drainer is None or self.drainer.done():
            self.drainer = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        while self.queued:
            batch, self.queued = self.queued, []
            outcomes = await db(self._run)(batch)
            late: dict[str, list] = {}
            for (kind, _, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.cancelled():
                    if ok and kind in self.undo:
                        late.setdefault(kind, []).append(value)
                elif ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
            if late:  # cancelled after their request ran
                await db(self._undo)(late)

    def _undo(self, late: dict[str, list]) -> None:
        with transaction.atomic():
            for kind, values in late.items():
                self.undo[kind](values)

    def _run(self, batch: list[tuple[str, object, asyncio.Future]]) -> list[tuple[bool, object]]:
        by_kind: dict[str, list[int]] = {}
        for i, (kind, _, _) in enumerate(batch):
            by_kind.setdefault(kind, []).append(i)
        outcomes: list[tuple[bool, object]] = [(False, None)] * len(batch)
        try:
            with transaction.atomic():
                for kind, where in by_kind.items():
                    results = self.handlers[kind]([batch[i][1] for i in where])
                    for i, outcome in zip(where, results, strict=True):
                        outcomes[i] = outcome
        except Exception as exc:  # the batch was rolled back: every leg in it learns why
            return [(False, exc)] * len(batch)
        return outcomes

    async def finish(self) -> None:
        """Wait until everything queued is written (a trip ends only after its writes)."""
        while self.drainer is not None and not self.drainer.done():
            await asyncio.shield(self.drainer)


class LegFailed(Exception):
    def __init__(self, error: MotorError) -> None:
        super().__init__(error.message)
        self.error = error


# A stand-in for a provider call: the original's `handler(prompt, config)`.
Handler = Callable[[str, dict], object]


class Fahrt:
    """Drives one claimed trip to its end."""

    def __init__(
        self,
        trip: Trip,
        *,
        gear: GearSpec,
        lage: Callable[[], Lage],
        strecke: Strecke,
        gas: Gas,
        handler: Handler | None = None,
        pruefstand: Pruefstand | None = None,
        on_delta: Callable[[str], None] | None = None,
        kickdown: Kickdown | None = None,
    ) -> None:
        self.trip, self.gear, self.strecke, self.gas = trip, gear, strecke, gas
        self.kickdown = kickdown
        self.answered_by: str | None = None  # a kickdown's accepted gear
        self.last_legs: list[Leg] = []  # the legs of the phase driven last
        self.notes: list[tuple[str, dict]] = []  # what happened on the road, for the next flush
        # Budget and breakers as they are now: read only when a leg needs a failover gear.
        self.load_lage = lage
        self.handler, self.pruefstand, self.on_delta = handler, pruefstand, on_delta
        self.totals = Totals()
        self.sammel = Sammelfahrt(
            {"create": self._insert_legs, "admit": self._admit_many, "settle": self._settle_many},
            undo={"admit": self._release_many},
        )
        # A resumed trip keeps the legs of its first run; new legs number on from them.
        self.position = 0
        if trip.resumed:
            self.position = trip.legs.aggregate(n=Max("position"))["n"] or 0
        self.gear_rows: dict[str, Gear | None] = {}
        if trip.gear_id and trip.gear_name == gear.name:
            self.gear_rows[gear.name] = trip.gear  # read with the trip
        self.healthy_until: dict[str, float] = {}  # gear name → monotonic deadline
        self.leg_updates: list[dict] = []  # finished legs not yet written as an event
        self.progress: dict[int, tuple[int, int]] = {}  # phase → (done, total), flushed with output
        self.buffer: dict[int, str] = {}
        self.buffered = 0
        self.started = time.perf_counter()
        self.first_token: float | None = None
        options = trip.options or {}
        self.concurrency = int(
            options.get("concurrency") or os.environ.get("CLUTCH_SWARM_CONCURRENCY", 8)
        )
        self.calling = asyncio.Semaphore(max(1, self.concurrency))  # provider calls at once
        self.item_timeout_s = float(
            options.get("item_timeout_s") or os.environ.get("CLUTCH_ITEM_TIMEOUT_S", 300)
        )

    # --- streaming, coalesced -----------------------------------------------------------

    def _delta(self, position: int, kind: str, text: str) -> None:
        if kind != "text" or not text:
            return
        if self.first_token is None:
            self.first_token = time.perf_counter()
        self.buffer[position] = self.buffer.get(position, "") + text
        self.buffered += len(text)
        if self.on_delta:
            self.on_delta(text)

    def _take_events(self) -> list[tuple[str, dict]]:
        """What streamed in since the last flush, finished legs and the progress, as events."""
        events = []
        if self.notes:
            events.extend(self.notes)
            self.notes = []
        if self.buffer:
            chunks, self.buffer, self.buffered = self.buffer, {}, 0
            events.append(("output", {"chunks": {str(k): v for k, v in chunks.items()}}))
        if self.leg_updates:
            updates, self.leg_updates = self.leg_updates, []
            events.append(("legs", {"legs": updates}))
        if self.progress:
            progress, self.progress = self.progress, {}
            events.extend(
                ("progress", {"phase": phase, "done": done, "total": total})
                for phase, (done, total) in progress.items()
            )
        return events

    async def _flush(self) -> None:
        if events := self._take_events():
            await db(log.trip_events)(self.trip.pk, events)

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            await self._flush()

    async def _watch(self, main: asyncio.Task) -> None:
        """Cancel the trip's calls when someone cancels the trip; beat the heart meanwhile."""
        last_beat = time.monotonic()
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            status = await db(
                lambda: (
                    Trip.objects.filter(pk=self.trip.pk).values_list("status", flat=True).first()
                )
            )()
            if status != TripStatus.RUNNING:
                main.cancel()
                return
            if time.monotonic() - last_beat >= HEARTBEAT_EVERY_S:
                await db(log.trip_heartbeat)(self.trip.pk)
                last_beat = time.monotonic()

    # --- one call -----------------------------------------------------------------------

    async def _call(
        self, gear: GearSpec, gear_row: Gear | None, prompt: str, position: int, gas: Gas
    ) -> Antwort:
        provider = None
        if gear_row is not None and not gear.simulated:
            provider = await db(getriebe.provider_config)(gear_row.provider)
        anfrage = Anfrage(
            gear=gear,
            messages=({"role": "user", "content": prompt},),
            gas=gas,
            system=gas.system_prompt,
            language=self.strecke.language,
            simulated=gear.simulated,
            provider=provider,
        )
        on_delta = lambda kind, text: self._delta(position, kind, text)  # noqa: E731
        if self.handler is None:
            return await registry.call(anfrage, on_delta, pruefstand=self.pruefstand)
        return await self._call_handler(anfrage, on_delta)

    async def _call_handler(self, anfrage: Anfrage, on_delta) -> Antwort:
        started = time.perf_counter()
        config = {
            "gear": anfrage.gear.name,
            "model_id": anfrage.gear.model_id,
            "gas": anfrage.gas.as_dict(),
            "system": anfrage.system,
        }
        result = await db(self.handler, thread_sensitive=False)(anfrage.prompt_text, config)
        if isinstance(result, dict):
            text = str(result.get("output", ""))
            usage = Usage(
                **{
                    k: int(v)
                    for k, v in (result.get("usage") or {}).items()
                    if k in Usage.__dataclass_fields__
                }
            )
        else:
            text, usage = str(result), Usage()
        if not usage.input_tokens:
            usage.input_tokens = max(1, len(anfrage.prompt_text) // 4)
        if not usage.output_tokens:
            usage.output_tokens = max(1, len(text) // 4)
        on_delta("text", text)
        latency = int((time.perf_counter() - started) * 1000)
        g = anfrage.gear
        return Antwort(
            text=text,
            usage=usage,
            latency_ms=latency,
            ttft_ms=latency,
            cost_usd=usage.cost_on(g),
        )

    # --- one leg: retries, failover, budget, breakers ----------------------------------

    async def _gear_row(self, name: str) -> Gear | None:
        """The gear's row, read once per trip (a swarm asks for it for every item)."""
        if name not in self.gear_rows:
            self.gear_rows[name] = await db(
                Gear.objects.select_related("provider").filter(name=name).first
            )()
        return self.gear_rows[name]

    async def _leg(self, leg: Leg, first: GearSpec | None = None, failover: bool = True) -> str:
        prompt, position = leg.prompt, leg.position
        first = first or self.gear
        gear = first
        started_at = timezone.now()
        attempts: list[dict] = []
        tried: list[GearSpec] = []
        candidates = [first]
        last_error = MotorError(ErrorKind.UNAVAILABLE, "no gear could take the call")
        while candidates:
            gear = candidates.pop(0)
            if tried:
                self.totals.failovers += 1
                self.totals.failover_reasons.append(
                    {
                        "step": "failover",
                        "message": f"{tried[-1].name} failed ({last_error.message}): "
                        f"leg {position} failed over to {gear.name} (G{gear.tier}).",
                        "data": {
                            "from": tried[-1].name,
                            "to": gear.name,
                            "leg": position,
                            "error_kind": last_error.kind,
                        },
                    }
                )
                await db(log.trip_event)(
                    self.trip.pk, "failover", leg=position, to=gear.name, reason=last_error.message
                )
            tried.append(gear)
            gear_row = await self._gear_row(gear.name)
            gas = (
                self.gas
                if gear.name == self.gear.name
                else gas_geben(
                    gear,
                    self.gas.wert,
                    language=self.strecke.language,
                    base_timeout_s=gear_row.provider.read_timeout_s if gear_row else 120.0,
                )
            )
            try:
                outcome = await self._try_gear(
                    gear, gear_row, gas, prompt, position, leg, attempts, started_at
                )
            except asyncio.CancelledError:
                stopped = MotorError(ErrorKind.CANCELLED, "cancelled while the call was running")
                await asyncio.shield(db(self._leg_failed)(leg, stopped, attempts, started_at))
                raise
            if isinstance(outcome, Antwort):
                self.totals.add(outcome)
                self._leg_event(leg)
                return outcome.text
            last_error = outcome
            if outcome.kind in (ErrorKind.INVALID_REQUEST, ErrorKind.BUDGET, ErrorKind.CANCELLED):
                break
            if failover and not candidates and len(tried) < 4:
                excluded = {g.name for g in tried}
                lage = await db(self.load_lage)()
                chain = failover_chain(
                    first,
                    self.strecke,
                    lage,
                    limit=4,
                    larger_window=outcome.kind == ErrorKind.CONTEXT_TOO_LONG,
                )
                candidates = [g for g in chain if g.name not in excluded][:1]
        await db(self._leg_failed)(leg, last_error, attempts, started_at)
        self._leg_event(leg)
        raise LegFailed(last_error)

    async def _try_gear(
        self,
        gear: GearSpec,
        gear_row: Gear | None,
        gas: Gas,
        prompt: str,
        position: int,
        leg: Leg,
        attempts: list[dict],
        started_at,
    ) -> Antwort | MotorError:
        ask_breaker = (
            gear_row is not None and self.healthy_until.get(gear_row.name, 0) <= time.monotonic()
        )
        for attempt in range(MAX_RETRIES + 1):
            # max_output_tokens already holds any thinking budget: the worst case of this call.
            worst = gear.cost(max(1, len(prompt) // 3) + 100, gas.max_output_tokens)
            try:
                entry = await self.sammel(
                    "admit", (gear_row, worst, leg, ask_breaker and attempt == 0)
                )
            except BreakerOpen:
                error = MotorError(ErrorKind.RETRYABLE, f"circuit breaker of {gear.name} is open")
                attempts.append(
                    {
                        "gear": gear.name,
                        "outcome": "skipped",
                        "error": error.as_dict(),
                        "latency_ms": 0,
                    }
                )
                return error
            except tankuhr.BudgetRefused as exc:
                error = MotorError(ErrorKind.BUDGET, f"Tankuhr refused the call: {exc}")
                attempts.append(
                    {
                        "gear": gear.name,
                        "outcome": "refused",
                        "error": error.as_dict(),
                        "latency_ms": 0,
                    }
                )
                return error
            try:
                async with self.calling:
                    started = time.perf_counter()
                    antwort = await self._call(gear, gear_row, prompt, position, gas)
            except MotorError as error:
                attempts.append(
                    {
                        "gear": gear.name,
                        "outcome": "error",
                        "error": error.as_dict(),
                        "latency_ms": int((time.perf_counter() - started) * 1000),
                    }
                )
                await db(self._failed_call)(entry, gear_row, error)
                self.healthy_until.pop(gear.name, None)
                if error.retryable and attempt < MAX_RETRIES:
                    self.totals.retries += 1
                    await asyncio.sleep(self._backoff(attempt, error))
                    continue
                return error
            except asyncio.CancelledError:
                attempts.append(
                    {
                        "gear": gear.name,
                        "outcome": "cancelled",
                        "latency_ms": int((time.perf_counter() - started) * 1000),
                    }
                )
                await asyncio.shield(db(tankuhr.settle)(entry, actual=Decimal(0)))
                raise
            attempts.append({"gear": gear.name, "outcome": "ok", "latency_ms": antwort.latency_ms})
            await self.sammel("settle", (entry, gear_row, antwort, leg, attempts, started_at))
            return antwort
        raise AssertionError("unreachable")

    def _admit_many(self, asks: list[tuple]) -> list[tuple[bool, object]]:
        """The breaker's yes, then the budget's reservation, for a batch of calls. The shared
        breaker is not asked for every item of a swarm: a gear seen healthy in this trip
        within the last second is taken as healthy until one of its calls fails."""
        outcomes: list[tuple[bool, object]] = [(False, None)] * len(asks)
        requests, where = [], []
        for i, (gear_row, amount, leg, ask_breaker) in enumerate(asks):
            if ask_breaker:
                allowed, healthy = bordcomputer.acquire_checked(gear_row)
                if not allowed:
                    outcomes[i] = (False, BreakerOpen())
                    continue
                if healthy:
                    self.healthy_until[gear_row.name] = time.monotonic() + 1.0
            requests.append(tankuhr.Reservation(amount, gear=gear_row, trip=self.trip, leg=leg))
            where.append(i)
        for i, outcome in zip(where, tankuhr.reserve_many(requests), strict=True):
            outcomes[i] = (not isinstance(outcome, tankuhr.BudgetRefused), outcome)
        return outcomes

    @staticmethod
    def _release_many(entries: list) -> None:
        tankuhr.settle_many([(entry, Decimal(0)) for entry in entries])

    def _failed_call(self, entry, gear_row: Gear | None, error: MotorError) -> None:
        tankuhr.settle(entry, actual=Decimal(0))
        self._feed_failure(gear_row, error)

    def _settle_many(self, done: list[tuple]) -> list[tuple[bool, object]]:
        """Everything good calls write: their settlements, breakers, legs; for a batch."""
        tankuhr.settle_many([(entry, antwort.cost_usd) for entry, _, antwort, *_ in done])
        for _, gear_row, antwort, leg, attempts, started_at in done:
            if gear_row is not None:
                if self.healthy_until.get(gear_row.name, 0) <= time.monotonic():
                    bordcomputer.record_success(gear_row)
                if gear_row.provider.misconfigured:
                    Provider.objects.filter(pk=gear_row.provider_id).update(misconfigured="")
                    gear_row.provider.misconfigured = ""
            self._fill_leg(leg, gear_row, antwort, attempts, started_at)
        update_many([leg for _, _, _, leg, _, _ in done], LEG_DONE_FIELDS)
        return [(True, None)] * len(done)

    @staticmethod
    def _backoff(attempt: int, error: MotorError) -> float:
        if error.retry_after is not None:
            return min(error.retry_after, RETRY_AFTER_CAP_S)
        base = RETRY_BASE_S * (2**attempt)
        return base + random.uniform(0, base)

    @staticmethod
    def _feed_failure(gear_row: Gear | None, error: MotorError) -> None:
        if gear_row is None or error.kind in (
            ErrorKind.INVALID_REQUEST,
            ErrorKind.CONTEXT_TOO_LONG,
        ):
            return
        credentials = error.kind == ErrorKind.CREDENTIALS
        bordcomputer.record_failure(gear_row, error.message, force_open=credentials)
        if credentials:
            Provider.objects.filter(pk=gear_row.provider_id).update(
                misconfigured=error.message[:300],
                misconfigured_key=gear_row.provider.key_fingerprint,
            )

    @staticmethod
    def _fill_leg(
        leg: Leg, gear_row: Gear | None, antwort: Antwort, attempts: list[dict], started_at
    ) -> None:
        u = antwort.usage
        leg.gear, leg.gear_name = gear_row, gear_row.name if gear_row else leg.gear_name
        leg.status, leg.output, leg.attempts = LegStatus.SUCCEEDED, antwort.text, attempts
        leg.input_tokens, leg.output_tokens = u.input_tokens, u.output_tokens
        leg.cached_tokens, leg.thinking_tokens = u.cached_tokens, u.thinking_tokens
        leg.cost_usd, leg.latency_ms, leg.ttft_ms = (
            antwort.cost_usd,
            antwort.latency_ms,
            antwort.ttft_ms,
        )
        leg.simulated, leg.started_at, leg.finished_at = (
            antwort.simulated,
            started_at,
            timezone.now(),
        )

    @staticmethod
    def _leg_failed(leg: Leg, error: MotorError, attempts: list[dict], started_at) -> None:
        leg.status = LegStatus.CANCELLED if error.kind == ErrorKind.CANCELLED else LegStatus.FAILED
        leg.error, leg.error_kind, leg.attempts = error.message, error.kind, attempts
        leg.started_at, leg.finished_at = started_at, timezone.now()
        leg.save(
            update_fields=["status", "error", "error_kind", "attempts", "started_at", "finished_at"]
        )

    def _leg_event(self, leg: Leg) -> None:
        """Queue a leg's outcome for the next flush: a swarm's legs become a few events."""
        self.leg_updates.append(
            {
                "position": leg.position,
                "status": leg.status,
                "gear": leg.gear_name,
                "title": leg.title,
                "cost_usd": str(leg.cost_usd),
                "latency_ms": leg.latency_ms,
                "error": leg.error,
            }
        )

    def _new_legs(
        self, number: int, phase: Phase, previous: list[str], gear: GearSpec
    ) -> list[Leg]:
        """The legs of a phase, not yet written (see _insert_legs)."""
        gear_row = self.gear_rows.get(gear.name)
        legs = []
        starts_at_once, now = len(phase.legs) <= self.concurrency, timezone.now()
        for plan in phase.legs:
            self.position += 1
            legs.append(
                Leg(
                    trip_id=self.trip.pk,
                    position=self.position,
                    phase=number,
                    role=plan.role,
                    title=plan.title[:200],
                    gear=gear_row,
                    gear_name=gear.name,
                    throttle=self.gas.wert,
                    prompt=plan.prompt(previous),
                    simulated=gear.simulated,
                    # All of a small phase start at once; a larger one waits for free slots.
                    status=LegStatus.RUNNING if starts_at_once else LegStatus.PENDING,
                    started_at=now if starts_at_once else None,
                )
            )
        return legs

    def _insert_legs(self, phases: list[list[Leg]]) -> list[tuple[bool, object]]:
        """A phase's legs in one insert (in the batch before their reservations, which need
        their ids), pending until their call finishes."""
        for legs in phases:
            Leg.objects.bulk_create(legs)
            if legs and legs[0].pk is None:  # a backend that returns no ids from bulk inserts
                by_position = dict(
                    Leg.objects.filter(trip_id=self.trip.pk, phase=legs[0].phase).values_list(
                        "position", "pk"
                    )
                )
                for leg in legs:
                    leg.pk = leg.id = by_position[leg.position]
        return [(True, legs) for legs in phases]

    # --- phases -------------------------------------------------------------------------

    async def _phase(
        self,
        number: int,
        phase: Phase,
        previous: list[str],
        gear: GearSpec | None = None,
        failover: bool = True,
    ) -> list[str]:
        """The phase's outputs; its legs drive ``gear`` (the trip's when not given)."""
        gear = gear or self.gear
        # At most `concurrency` calls at once (self.calling); up to twice as many legs may be
        # admitted (breaker asked, budget reserved) or settling meanwhile, so a slot freed by
        # a finished call goes at once to a leg that is ready, not to one that first waits
        # for the database.
        gate = asyncio.Semaphore(2 * max(1, self.concurrency))
        await self._gear_row(gear.name)
        legs = self._new_legs(number, phase, previous, gear)
        self.last_legs = legs
        # Not awaited here: the insert goes to the database with the first legs' reservations.
        created = asyncio.ensure_future(self.sammel("create", legs))
        total = len(legs)
        done = 0

        async def one(plan: LegPlan, leg: Leg) -> str | None:
            nonlocal done
            async with gate:
                try:
                    if plan.role == "item":
                        return await asyncio.wait_for(
                            self._leg(leg, gear, failover), self.item_timeout_s
                        )
                    return await self._leg(leg, gear, failover)
                except LegFailed:
                    if not phase.partial_ok:
                        raise
                    return None
                except TimeoutError:
                    await created
                    await db(self._item_timed_out)(leg)
                    self._leg_event(leg)
                    return None
                finally:
                    done += 1
                    if total > 1:
                        self.progress[number] = (done, total)

        results = await asyncio.gather(
            *(one(p, leg) for p, leg in zip(phase.legs, legs, strict=True))
        )
        await created
        good = [r for r in results if r is not None]
        if not good:
            raise LegFailed(
                MotorError(ErrorKind.RETRYABLE, f"every leg of phase {number + 1} failed")
            )
        if phase.aggregate:
            return [phase.aggregate(list(zip(phase.legs, results, strict=True)))]
        return good

    def _item_timed_out(self, leg: Leg) -> None:
        # The timeout cancelled the leg's call, which marked it cancelled: it timed out.
        leg.status, leg.error_kind = LegStatus.FAILED, "timeout"
        leg.error = f"item timed out after {self.item_timeout_s:g} s"
        leg.finished_at = timezone.now()
        leg.save(update_fields=["status", "error", "error_kind", "finished_at"])

    async def _drive(self, phases: list[Phase]) -> str:
        if self.kickdown is not None:
            return await self._kickdown(phases[0].legs[0], self.kickdown)
        outputs: list[str] = []
        for number, phase in enumerate(phases):
            outputs = await self._phase(number, phase, outputs)
        return outputs[-1] if len(outputs) == 1 else "\n\n".join(outputs)

    async def _kickdown(self, plan: LegPlan, chain: Kickdown) -> str:
        """Each cheap gear a phase of one leg (no failover: a cheap gear that cannot answer is
        a missing answer); at the first missing or differing letter the top gear drives."""
        kind = kickdown.answer_kind(self.trip.task)
        answers: list[tuple[str, str | None]] = []
        first_text = ""
        decided = None
        for number, gear in enumerate(chain.cheap):
            title = f"kickdown {number + 1}/{len(chain.cheap)}: {gear.name}"
            try:
                (text,) = await self._phase(
                    number, Phase([LegPlan("step", title, plan.prompt)]), [], gear, failover=False
                )
            except LegFailed as exc:
                if exc.error.kind in (ErrorKind.BUDGET, ErrorKind.CANCELLED):
                    raise
                text = None
            answered = self.last_legs[0].gear_name
            answers.append((answered, kickdown.normalise(text, kind)))
            if number == 0:
                first_text = text or ""
            decided = kickdown.verdict(answers, complete=number == len(chain.cheap) - 1)
            if decided is not None:
                break
        letters = dict(answers)
        if decided.accept:
            self.answered_by = answers[0][0]
            self._note(f"no kickdown: {decided.why}.", answers=letters, escalated=False)
            return first_text
        self._note(
            f"kickdown: {decided.why} → {chain.top.name}.",
            answers=letters,
            escalated=True,
            to=chain.top.name,
        )
        self.answered_by = chain.top.name
        title = f"kickdown: {chain.top.name}"
        (text,) = await self._phase(
            len(answers), Phase([LegPlan("step", title, plan.prompt)]), [], chain.top
        )
        self.answered_by = self.last_legs[0].gear_name
        return text

    def _note(self, message: str, **data) -> None:
        """A kickdown's verdict: one of the trip's reasons and an event of its timeline."""
        self.totals.failover_reasons.append({"step": "kickdown", "message": message, "data": data})
        self.notes.append(("kickdown", {"message": message, **data}))

    async def run(self, phases: list[Phase]) -> tuple[str, dict, list[tuple[str, dict]]]:
        """Drive all phases; returns (final status, trip fields, the last events), the last
        events to be written with the final status, in one transaction."""
        main = asyncio.ensure_future(self._drive(phases))
        watcher = asyncio.ensure_future(self._watch(main))
        flusher = asyncio.ensure_future(self._flusher())
        status, output, error, kind = TripStatus.SUCCEEDED, "", "", ""
        try:
            output = await main
        except LegFailed as exc:
            status, error, kind = TripStatus.FAILED, exc.error.message, exc.error.kind
            if exc.error.kind == ErrorKind.BUDGET:
                status = TripStatus.REFUSED
        except asyncio.CancelledError:
            status, error, kind = TripStatus.CANCELLED, "cancelled while running", "cancelled"
        finally:
            watcher.cancel()
            flusher.cancel()
            await asyncio.gather(watcher, flusher, return_exceptions=True)
            await self.sammel.finish()
        t = self.totals
        latency = int((time.perf_counter() - self.started) * 1000)
        fields = {
            "output": output,
            "error": error,
            "error_kind": kind,
            "input_tokens": t.usage.input_tokens,
            "output_tokens": t.usage.output_tokens,
            "cached_tokens": t.usage.cached_tokens,
            "thinking_tokens": t.usage.thinking_tokens,
            "cost_usd": t.cost,
            "latency_ms": latency,
            "ttft_ms": None
            if self.first_token is None
            else int((self.first_token - self.started) * 1000),
            "retries": t.retries,
            "failovers": t.failovers,
            # The decision's reasons, then what happened on the road.
            "reasons": [*self.trip.reasons, *t.failover_reasons],
            "simulated": t.simulated or self.trip.simulated,
        }
        if self.answered_by and self.answered_by != self.trip.gear_name:
            # The trip's gear is the one whose answer it returns (what its feedback judges).
            row = await self._gear_row(self.answered_by)
            fields["gear_name"], fields["gear_id"] = self.answered_by, row.pk if row else None
        return status, fields, self._take_events()
