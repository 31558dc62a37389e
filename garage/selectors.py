"""Reads of the car's tables for pages and the API."""

from dataclasses import dataclass

from garage.models import Gear, Road


@dataclass(frozen=True)
class GearRow:
    gear: Gear
    available: bool
    why_not: str


def gearbox_overview() -> list[GearRow]:
    """Every gear with whether it can drive now and, if not, what to do about it."""
    rows = []
    for gear in Gear.objects.select_related("provider").order_by("tier", "name"):
        provider = gear.provider
        if not gear.enabled:
            why = "gear disabled in the admin"
        elif not provider.enabled:
            why = f"provider {provider.name} disabled in the admin"
        elif not provider.has_credentials:
            why = f"no key: set {' or '.join(provider.api_key_env)}"
        else:
            why = ""
        rows.append(GearRow(gear=gear, available=not why, why_not=why))
    return rows


def road_table() -> list[Road]:
    return list(Road.objects.select_related("default_gear").order_by("order", "slug"))
