"""Fahrer: analyse → decide → execute → record. The one entry point that views, the API,
workers and the command line share.

    fahrer = Fahrer()
    result = fahrer.fahren("Fix the authentication bug in the login module")
    result.config.gang.name, result.config.gang.provider, result.config.gas.wert
"""

import random
from dataclasses import dataclass, replace
from decimal import Decimal

from asgiref.sync import async_to_sync
from django.conf import settings

from fahrtenbuch import services as log
from fahrtenbuch.models import Trip, TripStatus
from garage import bordcomputer, getriebe, tacho
from garage.engine.gas import Gas, gas_geben
from garage.engine.kupplung import PATTERNS, Entscheidung, Lage, Wunsch, kuppeln
from garage.engine.strecke import analyser_for
from garage.engine.types import GearSpec, Strecke
from garage.fahrt import Fahrt, Handler, Kickdown, plan_phases
from garage.motorblock.pruefstand import Pruefplan, Pruefstand

TEMPOS = ("urgent", "normal", "thorough")
LIST_OPTIONS = ("steps", "members", "items")


class InvalidOptions(log.ApplicationError):
    pass


@dataclass(frozen=True)
class Config:
    """What was chosen, in the original's vocabulary: ``config.gang.name``, ``config.gas.wert``."""

    gang: GearSpec | None
    gas: Gas | None
    pattern: str
    strecke: Strecke


@dataclass(frozen=True)
class Ergebnis:
    trip_id: int
    status: str
    output: str
    error: str
    config: Config
    decision: Entscheidung
    usage: dict
    cost_usd: Decimal
    latency_ms: int | None
    simulated: bool

    @property
    def ok(self) -> bool:
        return self.status == TripStatus.SUCCEEDED

    def as_dict(self) -> dict:
        return {
            **self.decision.as_dict(),
            "trip_id": self.trip_id,
            "status": self.status,
            "output": self.output,
            "error": self.error,
            "usage": self.usage,
            "cost_usd": str(self.cost_usd),
            "latency_ms": self.latency_ms,
            "simulated": self.simulated,
        }


def clean_options(task: str, options: dict) -> tuple[str, dict]:
    """Check a submission; raises InvalidOptions with what to fix."""
    if not isinstance(task, str) or not task.strip():
        raise InvalidOptions("The task is empty: describe what clutch should do.")
    limit = settings.CLUTCH_MAX_TASK_CHARS
    if len(task) > limit:
        raise InvalidOptions(
            f"The task has {len(task)} characters; the limit is {limit}.", status=413
        )
    cleaned: dict = {}
    if options.get("gear"):
        cleaned["gear"] = str(options["gear"])
    if options.get("throttle") is not None:
        try:
            throttle = float(options["throttle"])
        except (TypeError, ValueError):
            raise InvalidOptions("throttle must be a number from 0 to 1.") from None
        if not 0 <= throttle <= 1:
            raise InvalidOptions(f"throttle must be from 0 to 1, got {throttle}.")
        cleaned["throttle"] = throttle
    if options.get("pattern"):
        if options["pattern"] not in PATTERNS:
            raise InvalidOptions(f"pattern must be one of {', '.join(PATTERNS)}.")
        cleaned["pattern"] = options["pattern"]
    if options.get("tempo"):
        if options["tempo"] not in TEMPOS:
            raise InvalidOptions(f"tempo must be one of {', '.join(TEMPOS)}.")
        cleaned["tempo"] = options["tempo"]
    for key in LIST_OPTIONS:
        value = options.get(key)
        if value:
            if not isinstance(value, list | tuple) or not all(
                isinstance(v, str) and v.strip() for v in value
            ):
                raise InvalidOptions(f"{key} must be a list of non-empty strings.")
            cleaned[key] = [v.strip() for v in value]
    for key in ("concurrency", "item_timeout_s"):
        if options.get(key) is not None:
            try:
                number = float(options[key])
            except (TypeError, ValueError):
                raise InvalidOptions(f"{key} must be a positive number.") from None
            if number <= 0:
                raise InvalidOptions(f"{key} must be a positive number.")
            cleaned[key] = int(number) if key == "concurrency" else number
    if options.get("pruefstand"):
        try:
            Pruefplan.parse(dict(options["pruefstand"]))
        except (TypeError, ValueError) as exc:
            raise InvalidOptions(f"pruefstand: {exc}") from None
        cleaned["pruefstand"] = dict(options["pruefstand"])
    return task, cleaned


class Fahrer:
    """The driver. ``seed`` makes exploration reproducible (tests seed it)."""

    def __init__(self, *, user=None, seed: int | None = None) -> None:
        self.user = user
        self.rng = random.Random(seed)
        self.lam: float | None = None  # the Lernrouter's willingness to pay; None follows the zone

    # --- deciding ---------------------------------------------------------------------

    def lage(self) -> Lage:
        return getriebe.load_lage()

    def analyse(self, task: str, *, tempo: str | None = None, lage: Lage | None = None) -> Strecke:
        lage = lage or self.lage()
        return analyser_for(lage.roads.values()).analyse(task, tempo=tempo)

    def entscheiden(self, task: str, **options) -> Entscheidung:
        """The decision only; nothing runs and nothing is recorded."""
        task, options = self._clean(task, options)
        # A preview shows the choice itself: exploration's coin is tossed when a trip is made.
        lage = replace(self.lage(), epsilon=0.0)
        strecke = self.analyse(task, tempo=options.get("tempo"), lage=lage)
        return self._decide(strecke, lage, options, task)

    @staticmethod
    def _clean(task: str, options: dict) -> tuple[str, dict]:
        task, options = clean_options(task, options)
        if options.get("gear") and getriebe.gear_by_name(options["gear"]) is None:
            known = ", ".join(sorted(getriebe.gear_names()))
            raise InvalidOptions(
                f"Unknown or disabled gear {options['gear']!r}; choose one of: {known}."
            )
        return task, options

    def router(self):
        """The trained Lernrouter, or None before the first training with enough trips."""
        from garage import lernrouter

        if not lernrouter.default_path().exists():
            return None
        return lernrouter.load()

    def _decide(self, strecke: Strecke, lage: Lage, options: dict, task: str) -> Entscheidung:
        stages = max((len(options[k]) for k in LIST_OPTIONS if options.get(k)), default=0)
        wunsch = Wunsch(
            gear=options.get("gear"),
            throttle=options.get("throttle"),
            pattern=options.get("pattern"),
            stages=stages,
        )
        router = None if wunsch.gear else self.router()
        if router is None:
            return kuppeln(strecke, lage, wunsch, self.rng)
        from garage.lernkupplung import vorschlag

        proposal = vorschlag(strecke, lage, prompt=task, router=router, lam=self.lam)
        return kuppeln(strecke, lage, wunsch, self.rng, vorschlag=proposal)

    # --- driving ----------------------------------------------------------------------

    def submit(
        self, task: str, *, idempotency_key: str | None = None, **options
    ) -> tuple[Trip, bool]:
        """Analyse, decide and record a trip (queued, or refused with its reason).
        Returns (trip, created); an idempotency key seen before returns the first trip."""
        task, options = self._clean(task, options)
        if idempotency_key and self.user is not None:
            existing = Trip.objects.filter(user=self.user, idempotency_key=idempotency_key).first()
            if existing is not None:
                return existing, False
        lage = self.lage()
        strecke = self.analyse(task, tempo=options.get("tempo"), lage=lage)
        decision = self._decide(strecke, lage, options, task)
        return log.trip_create(
            user=self.user,
            task=task,
            options=options,
            decision=decision,
            idempotency_key=idempotency_key,
        )

    def drive(
        self, trip_id: int, *, handler: Handler | None = None, on_delta=None, reload: bool = True
    ) -> Trip:
        """Run a queued trip to its end. Safe to call twice: only one caller claims it.
        Returns the trip as stored (``reload=False``: as this driver left it, for callers
        that do not look at it, like the worker)."""
        if not log.trip_claim(trip_id):
            return Trip.objects.get(pk=trip_id)
        trip = Trip.objects.select_related("gear__provider").get(pk=trip_id)
        events: list[tuple[str, dict]] = []
        try:
            status, fields, events = self._run(trip, handler=handler, on_delta=on_delta)
        except Exception as exc:  # a bug must end the trip with its reason, never leave it running
            status, fields = (
                TripStatus.FAILED,
                {"error": f"internal error: {exc!r}", "error_kind": "internal"},
            )
        if (
            status in (TripStatus.SUCCEEDED, TripStatus.FAILED)
            and fields.get("latency_ms") is not None
        ):
            fields["anomalies"] = bordcomputer.anomalies(
                gear_id=trip.gear_id,
                road=trip.road,
                output_tokens=fields.get("output_tokens", 0),
                latency_ms=fields.get("latency_ms"),
            )
        finished = log.trip_finish(trip, status=status, fields=fields, events=events)
        if reload or not finished:  # not finished here: cancelled meanwhile, that status stands
            trip.refresh_from_db()
        return trip

    def _run(self, trip: Trip, *, handler, on_delta) -> tuple[str, dict, list]:
        strecke = strecke_of(trip)
        gear = getriebe.gear_by_name(trip.gear_name)
        if gear is None:
            return (
                TripStatus.FAILED,
                {
                    "error": f"gear {trip.gear_name!r} is no longer in the gearbox",
                    "error_kind": "unavailable",
                },
                [],
            )
        if trip.simulated and not gear.simulated:
            gear = _simulated(gear)
        gas = gas_geben(
            gear,
            trip.throttle if trip.throttle is not None else 0.5,
            language=strecke.language,
            base_timeout_s=trip.gear.provider.read_timeout_s if trip.gear else 120.0,
        )
        plan = trip.options.get("pruefstand")
        pruefstand = Pruefstand(Pruefplan.parse(plan)) if plan else None
        fahrt = Fahrt(
            trip,
            gear=gear,
            lage=self.lage,
            strecke=strecke,
            gas=gas,
            handler=handler,
            pruefstand=pruefstand,
            on_delta=on_delta,
            kickdown=kickdown_of(trip),
        )
        phases = plan_phases(trip.task, trip.pattern, strecke, trip.options)
        return async_to_sync(fahrt.run)(phases)

    def fahren(
        self,
        task: str,
        handler: Handler | None = None,
        *,
        on_delta=None,
        idempotency_key: str | None = None,
        **options,
    ) -> Ergebnis:
        """Submit and drive a trip in this process; returns the result with its config."""
        trip, _ = self.submit(task, idempotency_key=idempotency_key, **options)
        if trip.status == TripStatus.QUEUED:
            trip = self.drive(trip.pk, handler=handler, on_delta=on_delta)
        return self.ergebnis(trip)

    def ergebnis(self, trip: Trip) -> Ergebnis:
        decision_event = trip.events.filter(kind="decision").first()
        decision_data = decision_event.data if decision_event else {}
        lage_gear = getriebe.gear_by_name(trip.gear_name) if trip.gear_name else None
        strecke = strecke_of(trip)
        gas = (
            gas_geben(lage_gear, trip.throttle or 0.0, language=strecke.language)
            if lage_gear
            else None
        )
        decision = _decision_from_data(decision_data, strecke, lage_gear, gas)
        return Ergebnis(
            trip_id=trip.pk,
            status=trip.status,
            output=trip.output,
            error=trip.error,
            config=Config(gang=lage_gear, gas=gas, pattern=trip.pattern, strecke=strecke),
            decision=decision,
            usage={
                "input_tokens": trip.input_tokens,
                "output_tokens": trip.output_tokens,
                "cached_tokens": trip.cached_tokens,
                "thinking_tokens": trip.thinking_tokens,
            },
            cost_usd=trip.cost_usd,
            latency_ms=trip.latency_ms,
            simulated=trip.simulated,
        )

    # --- the dashboard and the school -------------------------------------------------

    def status(self) -> dict:
        from garage import tankuhr

        routable, by_name, unavailable = getriebe.load_gearbox()
        return {
            "tankuhr": tankuhr.fuel().as_dict(),
            "getriebe": "Getriebe[" + ", ".join(f"{g.name}(G{g.tier})" for g in routable) + "]",
            "gears": [
                {
                    "name": g.name,
                    "tier": g.tier,
                    "provider": g.provider,
                    "model_id": g.model_id,
                    "available": g.name not in unavailable,
                    "why_not": unavailable.get(g.name, ""),
                    "simulated": g.simulated,
                }
                for g in (*routable, *by_name)
            ],
            "bordcomputer": {
                "breakers": bordcomputer.status(),
                "latency": bordcomputer.latency().as_dict(),
            },
            "tacho": tacho.summary(),
        }

    def trainieren(self, *, user=None) -> dict:
        from garage import fahrschule

        return fahrschule.trainieren(user=user or self.user)


def _simulated(gear: GearSpec) -> GearSpec:
    fields = {f: getattr(gear, f) for f in GearSpec.__dataclass_fields__}
    return GearSpec(**{**fields, "simulated": True})


def kickdown_of(trip: Trip) -> Kickdown | None:
    """The kickdown chain the decision gave a single trip, with the gears as they are now;
    None without one, or when one of its gears left the gearbox (the trip's gear drives)."""
    if trip.pattern != "single":
        return None
    step = next((r for r in trip.reasons or () if r.get("step") == "kickdown"), None)
    data = (step or {}).get("data") or {}
    if not data.get("chain") or not data.get("top"):
        return None
    gears = [getriebe.gear_by_name(name) for name in (*data["chain"], data["top"])]
    if any(g is None for g in gears):
        return None
    if trip.simulated:
        gears = [g if g.simulated else _simulated(g) for g in gears]
    return Kickdown(cheap=tuple(gears[:-1]), top=gears[-1])


def strecke_of(trip: Trip) -> Strecke:
    """The analysis a trip was decided on, as recorded with it."""
    return Strecke(**{k: tuple(v) if isinstance(v, list) else v for k, v in trip.analysis.items()})


def _decision_from_data(
    data: dict, strecke: Strecke, gear: GearSpec | None, gas: Gas | None
) -> Entscheidung:
    from garage.engine.types import Reason

    reasons = tuple(
        Reason(r.get("step", ""), r.get("message", ""), r.get("data", {}))
        for r in data.get("reasons", [])
    )
    return Entscheidung(
        strecke=strecke,
        gear=gear,
        throttle=data.get("throttle", 0.0),
        pattern=data.get("pattern", "single"),
        zone=data.get("zone", ""),
        reasons=reasons,
        explored=data.get("explored", False),
        refused=data.get("refused"),
        gas=gas,
        legs=data.get("legs", 1),
        estimated_cost_usd=Decimal(data.get("estimated_cost_usd", "0")),
        reserve_usd=Decimal(data.get("reserve_usd", "0")),
    )
