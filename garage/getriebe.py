"""Getriebe: the gearbox as the engine sees it, loaded from the tables.

Builds the plain ``Lage`` the Kupplung decides on: gears and roads as dataclasses, which gears
are unavailable and why, open breakers, the fuel, learned policies and ε.
"""

import os
import threading
import time
from dataclasses import dataclass

from garage import credentials
from garage.engine.kupplung import Lage, Policy
from garage.engine.tankuhr import Fuel
from garage.engine.types import GearSpec, RoadSpec
from garage.models import FitnessCriteria, Gear, Provider, ProviderKind, Road
from garage.motorblock import registry
from garage.motorblock.base import ProviderConfig

CLOUD_KINDS = frozenset({ProviderKind.ANTHROPIC, ProviderKind.GEMINI, ProviderKind.OPENAI})
LOCAL_SERVER_KINDS = frozenset({ProviderKind.OLLAMA})


def drivers() -> frozenset[str]:
    """Provider kinds whose driver can run here."""
    return registry.available_kinds()


def pruefstand_stands_in(providers: list[Provider] | None = None) -> bool:
    """True when the Prüfstand simulates the cloud gears.

    CLUTCH_PRUEFSTAND=1 forces it, =0 forbids it; unset, it stands in when no cloud provider
    has credentials, so a fresh install can drive (labelled simulated) before keys are set.
    """
    forced = os.environ.get("CLUTCH_PRUEFSTAND", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if providers is None:
        providers = list(Provider.objects.filter(kind__in=CLOUD_KINDS, enabled=True))
    return not any(p.has_credentials for p in providers if p.kind in CLOUD_KINDS and p.enabled)


def _why_unavailable(provider: Provider, stand_in: bool, kinds: frozenset[str]) -> str:
    if not provider.enabled:
        return f"provider {provider.name} is disabled in the admin"
    if provider.kind in CLOUD_KINDS and stand_in:
        return ""
    if not provider.has_credentials:
        return f"no key: set {' or '.join(provider.api_key_env)}"
    if provider.rejected_key_in_use:
        names = " or ".join(provider.api_key_env) or "its credentials"
        return f"credentials rejected: {provider.misconfigured} (set a valid key in {names})"
    if provider.kind not in kinds:
        return registry.why_unavailable(provider.kind)
    if provider.kind in LOCAL_SERVER_KINDS and provider.probe_ok is not True:
        where = provider_config(provider).base_url or "its base URL"
        detail = provider.probe_detail or "not checked yet: run `manage.py providers`"
        return f"not reachable at {where} ({detail})"
    return ""


def provider_config(provider: Provider) -> ProviderConfig:
    """Where to reach ``provider`` now, with its key looked up from the environment."""
    base_url = (
        os.environ.get(provider.base_url_env, "").strip() if provider.base_url_env else ""
    ) or provider.base_url
    source = provider.credential_source
    return ProviderConfig(
        name=provider.name,
        kind=provider.kind,
        base_url=base_url.rstrip("/"),
        api_key=(credentials.lookup(source) or "") if source else "",
        connect_timeout_s=provider.connect_timeout_s,
        read_timeout_s=provider.read_timeout_s,
        max_concurrency=provider.max_concurrency,
    )


def gear_spec(gear: Gear, *, simulated: bool = False) -> GearSpec:
    return GearSpec(
        name=gear.name,
        provider=gear.provider.name,
        provider_kind=gear.provider.kind,
        model_id=gear.model_id,
        tier=gear.tier,
        input_price=gear.input_price,
        output_price=gear.output_price,
        cached_input_price=gear.cached_input_price,
        thinking_price=gear.thinking_price,
        context_window=gear.context_window,
        max_output_tokens=gear.max_output_tokens,
        reasoning=gear.reasoning,
        label=gear.label,
        enabled=gear.enabled,
        simulated=simulated or gear.provider.kind == ProviderKind.PRUEFSTAND,
    )


def road_spec(road: Road) -> RoadSpec:
    return RoadSpec(
        slug=road.slug,
        label=road.label,
        difficulty=road.difficulty,
        default_gear=road.default_gear.name,
        throttle=road.throttle,
        pattern=road.pattern,
        signals_en=tuple(road.signals_en),
        signals_de=tuple(road.signals_de),
        is_fallback=road.is_fallback,
        order=road.order,
    )


def load_roads() -> list[RoadSpec]:
    return [
        road_spec(r) for r in Road.objects.select_related("default_gear").order_by("order", "slug")
    ]


def load_gearbox() -> tuple[list[GearSpec], list[GearSpec], dict[str, str]]:
    """(routable gears, gears only by name, unavailable gear → why) for enabled gears."""
    gears = list(
        Gear.objects.filter(enabled=True).select_related("provider").order_by("tier", "name")
    )
    providers = {g.provider.pk: g.provider for g in gears}
    stand_in = pruefstand_stands_in(list(providers.values()))
    kinds = drivers()
    routable, by_name, unavailable = [], [], {}
    for gear in gears:
        simulated = stand_in and gear.provider.kind in CLOUD_KINDS
        spec = gear_spec(gear, simulated=simulated)
        if gear.provider.kind == ProviderKind.PRUEFSTAND:
            by_name.append(spec)
        else:
            routable.append(spec)
        why = _why_unavailable(gear.provider, stand_in, kinds)
        if why:
            unavailable[gear.name] = why
    return routable, by_name, unavailable


def current_epsilon(criteria: FitnessCriteria) -> float:
    from fahrtenbuch.models import TrainingRun

    last = TrainingRun.objects.order_by("-id").values_list("epsilon_after", flat=True).first()
    return criteria.epsilon_start if last is None else last


def load_policies() -> dict[str, Policy]:
    from fahrtenbuch.models import RoutingPolicy

    return {
        p.road.slug: Policy(
            gear=p.gear.name, throttle=p.throttle, pattern=p.pattern, samples=p.samples
        )
        for p in RoutingPolicy.objects.select_related("road", "gear")
    }


@dataclass(frozen=True)
class _Tables:
    gears: tuple[GearSpec, ...]
    extra_gears: tuple[GearSpec, ...]
    unavailable: dict[str, str]
    roads: dict[str, RoadSpec]
    policies: dict[str, Policy]
    min_samples: int
    epsilon: float


_tables: tuple[float, _Tables] | None = None
_tables_lock = threading.Lock()


def tables_ttl_s() -> float:
    return float(os.environ.get("CLUTCH_TABLES_TTL_S", "2"))


def forget_tables(**_) -> None:
    """Drop this process's copy of the tables (called when one of them is saved here)."""
    global _tables
    _tables = None


def _load_tables() -> _Tables:
    """Gears, roads, policies and ε change rarely but are read for every decision: each
    process keeps them for CLUTCH_TABLES_TTL_S seconds (2 by default), and drops them at once
    when this process saves one of those rows. Fuel and breakers: see _fuel_and_breakers."""
    global _tables
    now = time.monotonic()
    cached = _tables
    if cached is not None and now - cached[0] < tables_ttl_s():
        return cached[1]
    with _tables_lock:
        criteria = FitnessCriteria.objects.first() or FitnessCriteria()
        routable, by_name, unavailable = load_gearbox()
        tables = _Tables(
            gears=tuple(routable),
            extra_gears=tuple(by_name),
            unavailable=unavailable,
            roads={r.slug: r for r in load_roads()},
            policies=load_policies(),
            min_samples=criteria.min_samples,
            epsilon=current_epsilon(criteria),
        )
        _tables = (now, tables)
        return tables


def gear_names() -> list[str]:
    t = _load_tables()
    return [g.name for g in (*t.gears, *t.extra_gears)]


def gear_by_name(name: str) -> GearSpec | None:
    t = _load_tables()
    return next((g for g in (*t.gears, *t.extra_gears) if g.name == name), None)


_moment: tuple[float, Fuel, frozenset[str]] | None = None


def lage_ttl_s() -> float:
    return float(os.environ.get("CLUTCH_LAGE_TTL_S", "1"))


def _fuel_and_breakers() -> tuple[Fuel, frozenset[str]]:
    """The budget's fuel and the open breakers, as a decision sees them: read at most once
    per CLUTCH_LAGE_TTL_S (1 s) per process. A decision a second behind is safe: the
    Tankuhr's reservation under the budget lock is what refuses a call that would overshoot,
    and the worker asks the breaker again before every call."""
    from garage import bordcomputer, tankuhr

    global _moment
    now = time.monotonic()
    moment = _moment
    if moment is not None and now - moment[0] < lage_ttl_s():
        return moment[1], moment[2]
    fuel, open_breakers = tankuhr.fuel(), bordcomputer.open_breakers()
    _moment = (now, fuel, open_breakers)
    return fuel, open_breakers


def load_lage() -> Lage:
    t = _load_tables()
    fuel, open_breakers = _fuel_and_breakers()
    return Lage(
        gears=t.gears,
        roads=t.roads,
        fuel=fuel,
        open_breakers=open_breakers,
        unavailable=t.unavailable,
        policies=t.policies,
        min_samples=t.min_samples,
        epsilon=t.epsilon,
        extra_gears=t.extra_gears,
    )
