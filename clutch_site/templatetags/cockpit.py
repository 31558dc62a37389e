"""Small formatting helpers for the cockpit pages."""

from decimal import Decimal

from django import template

from garage import getriebe

register = template.Library()


@register.simple_tag
def pruefstand_stands_in() -> bool:
    """True when the Prüfstand simulates the cloud gears (the banner on every page says so)."""
    return getriebe.pruefstand_stands_in()


@register.filter
def usd(value) -> str:
    """USD with as many decimals as a small amount needs: $12.50, $0.0153, $0.000042."""
    if value in (None, ""):
        return "–"
    amount = Decimal(str(value))
    if amount == 0:
        return "$0"
    places = 2 if abs(amount) >= 1 else 4 if abs(amount) >= Decimal("0.0001") else 6
    return f"${amount:,.{places}f}"


@register.filter
def pct(value, places: int = 0) -> str:
    if value in (None, ""):
        return "–"
    return f"{float(value) * 100:.{int(places)}f} %"


@register.filter
def ms(value) -> str:
    """Milliseconds as people read them: 850 ms, 2.4 s, 3 min 5 s."""
    if value in (None, ""):
        return "–"
    value = int(value)
    if value < 1000:
        return f"{value} ms"
    if value < 60_000:
        return f"{value / 1000:.1f} s"
    return f"{value // 60_000} min {value % 60_000 // 1000} s"


@register.filter
def tokens(value) -> str:
    if value in (None, ""):
        return "–"
    value = int(value)
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f} M"
    if value >= 10_000:
        return f"{value / 1000:.0f} k"
    return f"{value:,}"


@register.filter
def share_width(value) -> str:
    """A 0..1 share as a CSS width, capped at 100 %."""
    try:
        return f"{min(max(float(value), 0.0), 1.0) * 100:.1f}%"
    except (TypeError, ValueError):
        return "0%"
