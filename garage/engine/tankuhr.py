"""Tankuhr zones: usage → zone → the highest tier allowed. Half-open boundaries everywhere."""

from dataclasses import dataclass
from decimal import Decimal

ZONES = ("green", "yellow", "orange", "red")


@dataclass(frozen=True, slots=True)
class ZoneRules:
    yellow_from: Decimal = Decimal("0.30")
    orange_from: Decimal = Decimal("0.60")
    red_from: Decimal = Decimal("0.80")
    max_tier: tuple[int, int, int, int] = (5, 3, 2, 0)  # green, yellow, orange, red

    def zone(self, usage: Decimal) -> str:
        """[0, yellow) green, [yellow, orange) yellow, [orange, red) orange, [red, ∞) red."""
        if usage >= self.red_from:
            return "red"
        if usage >= self.orange_from:
            return "orange"
        if usage >= self.yellow_from:
            return "yellow"
        return "green"

    def tier_cap(self, zone: str) -> int:
        return self.max_tier[ZONES.index(zone)]


@dataclass(frozen=True, slots=True)
class Fuel:
    """Spend against the limits at one moment."""

    day_spent: Decimal
    day_limit: Decimal
    month_spent: Decimal
    month_limit: Decimal
    rules: ZoneRules = ZoneRules()

    @property
    def usage(self) -> Decimal:
        return max(self.day_spent / self.day_limit, self.month_spent / self.month_limit)

    @property
    def zone(self) -> str:
        return self.rules.zone(self.usage)

    @property
    def tier_cap(self) -> int:
        return self.rules.tier_cap(self.zone)

    def as_dict(self) -> dict:
        return {
            "zone": self.zone,
            "usage": float(round(self.usage, 4)),
            "day_spent_usd": str(self.day_spent),
            "day_limit_usd": str(self.day_limit),
            "month_spent_usd": str(self.month_spent),
            "month_limit_usd": str(self.month_limit),
            "tier_cap": self.tier_cap,
        }
