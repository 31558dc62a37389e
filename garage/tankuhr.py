"""Tankuhr: the spend ledger. Reserve before a call, settle or release after it.

Reservations are checked against the daily and monthly limits inside one transaction that
first locks the budget row (PostgreSQL) or takes SQLite's write lock (IMMEDIATE), so
concurrent trips are serialised at this one point and can never overshoot a limit together.
"""

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from clutch_site.rows import add_to, update_many
from fahrtenbuch.models import SpendDay, SpendEntry, SpendState
from garage.engine.tankuhr import Fuel, ZoneRules
from garage.models import Budget

ZERO = Decimal(0)


class BudgetRefused(Exception):
    """A reservation that would overshoot a limit; the message says which and by how much."""


def budget() -> Budget:
    found = Budget.objects.filter(name="default").first()
    if found is None:
        raise Budget.DoesNotExist(
            "No budget row: run `manage.py clutch_setup` (make run does) to import the defaults."
        )
    return found


def zone_rules(b: Budget) -> ZoneRules:
    return ZoneRules(
        yellow_from=b.yellow_from,
        orange_from=b.orange_from,
        red_from=b.red_from,
        max_tier=(b.green_max_tier, b.yellow_max_tier, b.orange_max_tier, b.red_max_tier),
    )


def local_today(b: Budget, now: datetime | None = None) -> date:
    return (now or timezone.now()).astimezone(ZoneInfo(b.timezone)).date()


def _spent(today: date) -> tuple[Decimal, Decimal]:
    """(today's committed spend, this month's) from the per-day rollup: at most 31 rows."""
    rows = SpendDay.objects.filter(day__gte=today.replace(day=1), day__lte=today)
    month = ZERO
    day = ZERO
    for row_day, committed in rows.values_list("day", "committed_usd"):
        month += committed
        if row_day == today:
            day = committed
    return day, month


def fuel(now: datetime | None = None) -> Fuel:
    b = budget()
    day, month = _spent(local_today(b, now))
    return Fuel(day, b.daily_limit_usd, month, b.monthly_limit_usd, zone_rules(b))


def _lock_budget() -> Budget:
    # On PostgreSQL this row lock serialises every reservation; on SQLite the IMMEDIATE
    # transaction already holds the database's write lock and FOR UPDATE is ignored.
    return Budget.objects.select_for_update().get(name="default")


def reserve(
    *, amount: Decimal, gear=None, trip=None, leg=None, now: datetime | None = None
) -> SpendEntry:
    """Hold ``amount`` USD before a call; raises BudgetRefused if a limit would be overshot."""
    [outcome] = reserve_many([Reservation(amount, gear=gear, trip=trip, leg=leg)], now=now)
    if isinstance(outcome, BudgetRefused):
        raise outcome
    return outcome


@dataclass(frozen=True, slots=True)
class Reservation:
    amount: Decimal
    gear: object = None
    trip: object = None
    leg: object = None


def reserve_many(
    requests: list[Reservation], *, now: datetime | None = None
) -> list[SpendEntry | BudgetRefused]:
    """Hold several amounts in one transaction, in order: each gets its entry, or the
    BudgetRefused that says which limit it would overshoot (the ones after it may still fit).
    One lock, one read of the spend and one write per batch, however many legs ask."""
    if any(r.amount < 0 for r in requests):
        raise ValueError("a reservation cannot be negative")
    with transaction.atomic():
        b = _lock_budget()
        today = local_today(b, now)
        day, month = _spent(today)
        outcomes: list[SpendEntry | BudgetRefused] = []
        for r in requests:
            if day + r.amount > b.daily_limit_usd:
                outcomes.append(
                    BudgetRefused(
                        f"daily limit {b.daily_limit_usd} USD would be exceeded: {day:.4f} USD "
                        f"committed today, this call may cost up to {r.amount:.4f} USD"
                    )
                )
            elif month + r.amount > b.monthly_limit_usd:
                outcomes.append(
                    BudgetRefused(
                        f"monthly limit {b.monthly_limit_usd} USD would be exceeded: "
                        f"{month:.4f} USD committed this month, this call may cost up to "
                        f"{r.amount:.4f} USD"
                    )
                )
            else:
                outcomes.append(
                    SpendEntry(
                        trip=r.trip, leg=r.leg, gear=r.gear, local_day=today, reserved_usd=r.amount
                    )
                )
                day += r.amount
                month += r.amount
        entries = [o for o in outcomes if isinstance(o, SpendEntry)]
        if entries:
            SpendEntry.objects.bulk_create(entries)
            _add(today, committed=sum((e.reserved_usd for e in entries), ZERO))
    return outcomes


def _add(day: date, *, committed: Decimal = ZERO, settled: Decimal = ZERO) -> None:
    updated = add_to(SpendDay, {"day": day}, committed_usd=committed, settled_usd=settled)
    if not updated:
        SpendDay.objects.create(day=day, committed_usd=committed, settled_usd=settled)


def settle(entry: SpendEntry, *, actual: Decimal) -> None:
    """Replace the held amount by what the call really cost."""
    settle_many([(entry, actual)])


def settle_many(settlements: list[tuple[SpendEntry, Decimal]]) -> None:
    """Replace held amounts by what the calls really cost, in one transaction.

    Only entries still held are settled (a second settlement of one entry changes nothing);
    their rows are locked first (PostgreSQL), so a recovery settling the same entries at the
    same time cannot count them twice. Lowering the totals needs no other lock; raising them
    (a call that cost more than its reservation) takes the budget lock like a reservation,
    so the two cannot overshoot together."""
    if not settlements:
        return
    now = timezone.now()
    with transaction.atomic():
        if any(actual > entry.reserved_usd for entry, actual in settlements):
            _lock_budget()
        held = set(
            SpendEntry.objects.select_for_update()
            .filter(pk__in=[entry.pk for entry, _ in settlements], state=SpendState.HELD)
            .values_list("pk", flat=True)
        )
        claimed, by_day = [], {}
        for entry, actual in settlements:
            if entry.pk not in held:
                continue
            held.discard(entry.pk)  # the same entry twice in one batch counts once
            entry.state, entry.actual_usd, entry.settled_at = SpendState.SETTLED, actual, now
            claimed.append(entry)
            committed, settled = by_day.get(entry.local_day, (ZERO, ZERO))
            by_day[entry.local_day] = (committed + actual - entry.reserved_usd, settled + actual)
        if claimed:
            update_many(claimed, ["state", "actual_usd", "settled_at"])
        for day, (committed, settled) in by_day.items():
            _add(day, committed=committed, settled=settled)
    for entry, actual in settlements:
        entry.state, entry.actual_usd = SpendState.SETTLED, actual


def release(entry: SpendEntry) -> None:
    """Give a reservation back when the call spent nothing (refused before it ran)."""
    with transaction.atomic():
        claimed = SpendEntry.objects.filter(pk=entry.pk, state=SpendState.HELD).update(
            state=SpendState.RELEASED, actual_usd=ZERO, settled_at=timezone.now()
        )
        if claimed:
            _add(entry.local_day, committed=-entry.reserved_usd)
    entry.state = SpendState.RELEASED


def ledger_totals(day: date) -> Decimal:
    """The day's committed spend recomputed from the ledger itself (checks the rollup)."""
    rows = SpendEntry.objects.filter(local_day=day)
    held = rows.filter(state=SpendState.HELD).aggregate(s=Sum("reserved_usd"))["s"] or ZERO
    settled = rows.filter(state=SpendState.SETTLED).aggregate(s=Sum("actual_usd"))["s"] or ZERO
    return held + settled
