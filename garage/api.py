"""The car's API: status, gears, roads and training."""

from ninja import Router, Schema

from fahrtenbuch.schemas import ErrorOut
from fahrtenbuch.services import ApplicationError
from garage import bordcomputer, getriebe
from garage.fahrer import Fahrer
from garage.models import Gear, Road

router = Router(tags=["garage"])


class GearOut(Schema):
    name: str
    label: str
    provider: str
    provider_kind: str
    model_id: str
    tier: int
    input_price: str
    output_price: str
    cached_input_price: str
    thinking_price: str
    prices_as_of: str | None
    context_window: int
    max_output_tokens: int
    reasoning: str
    strengths: list[str]
    enabled: bool
    available: bool
    why_not: str
    simulated: bool
    breaker: str


class RoadOut(Schema):
    slug: str
    label: str
    category: str
    difficulty: float
    default_gear: str
    throttle: float
    pattern: str
    signals_en: list[str]
    signals_de: list[str]
    policy_gear: str | None
    policy_throttle: float | None
    policy_samples: int | None


@router.get("/status", summary="Tankuhr, Getriebe, Bordcomputer and Tacho at a glance")
def status(request):
    return Fahrer().status()


@router.get("/gears", response=list[GearOut], summary="Every gear with availability and health")
def gears(request):
    routable, by_name, unavailable = getriebe.load_gearbox()
    specs = {g.name: g for g in (*routable, *by_name)}
    open_now = bordcomputer.open_breakers()
    rows = []
    for gear in Gear.objects.select_related("provider", "breaker").order_by("tier", "name"):
        spec = specs.get(gear.name)
        breaker = getattr(gear, "breaker", None)
        rows.append(
            {
                "name": gear.name,
                "label": gear.label,
                "provider": gear.provider.name,
                "provider_kind": gear.provider.kind,
                "model_id": gear.model_id,
                "tier": gear.tier,
                "input_price": str(gear.input_price),
                "output_price": str(gear.output_price),
                "cached_input_price": str(gear.cached_input_price),
                "thinking_price": str(gear.thinking_price),
                "prices_as_of": gear.prices_as_of.isoformat() if gear.prices_as_of else None,
                "context_window": gear.context_window,
                "max_output_tokens": gear.max_output_tokens,
                "reasoning": gear.reasoning,
                "strengths": gear.strengths,
                "enabled": gear.enabled,
                "available": gear.enabled
                and gear.name not in unavailable
                and gear.name not in open_now,
                "why_not": (
                    "disabled"
                    if not gear.enabled
                    else unavailable.get(gear.name, "")
                    or ("circuit breaker open" if gear.name in open_now else "")
                ),
                "simulated": bool(spec and spec.simulated),
                "breaker": breaker.state if breaker else "closed",
            }
        )
    return rows


@router.get("/roads", response=list[RoadOut], summary="Road types and what was learned for them")
def roads(request):
    rows = []
    for road in Road.objects.select_related("default_gear", "policy__gear").order_by("order"):
        policy = getattr(road, "policy", None)
        rows.append(
            {
                "slug": road.slug,
                "label": road.label,
                "category": road.category,
                "difficulty": road.difficulty,
                "default_gear": road.default_gear.name,
                "throttle": road.throttle,
                "pattern": road.pattern,
                "signals_en": road.signals_en,
                "signals_de": road.signals_de,
                "policy_gear": policy.gear.name if policy else None,
                "policy_throttle": policy.throttle if policy else None,
                "policy_samples": policy.samples if policy else None,
            }
        )
    return rows


@router.post(
    "/training",
    response={200: dict, 401: ErrorOut, 403: ErrorOut},
    summary="Train the Fahrschule now (admins only)",
)
def training(request):
    if not request.auth.is_staff:
        raise ApplicationError("Training is for admins only.", status=403)
    return Fahrer(user=request.auth).trainieren()
