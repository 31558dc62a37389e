"""The spend ledger: reservations, settlement, zones, calendar days — and no overshoot when
many trips reserve at once (threads against SQLite here, and PostgreSQL in the scale-out run)."""

import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection, connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fahrtenbuch.models import SpendDay, SpendEntry, SpendState
from garage import tankuhr
from garage.models import Budget


@pytest.fixture
def budget(defaults):
    b = Budget.objects.get(name="default")
    b.daily_limit_usd, b.monthly_limit_usd = Decimal("10"), Decimal("100")
    b.save()
    return b


def test_reserve_then_settle_moves_the_fuel_to_the_real_cost(budget):
    entry = tankuhr.reserve(amount=Decimal("2.5"))
    assert tankuhr.fuel().day_spent == Decimal("2.5")
    tankuhr.settle(entry, actual=Decimal("0.75"))
    fuel = tankuhr.fuel()
    assert fuel.day_spent == Decimal("0.75") and fuel.month_spent == Decimal("0.75")
    assert SpendEntry.objects.get().state == SpendState.SETTLED
    assert tankuhr.ledger_totals(tankuhr.local_today(budget)) == Decimal("0.75")


def test_release_gives_the_reservation_back(budget):
    entry = tankuhr.reserve(amount=Decimal("3"))
    tankuhr.release(entry)
    assert tankuhr.fuel().day_spent == 0


def test_settling_twice_counts_once(budget):
    entry = tankuhr.reserve(amount=Decimal("1"))
    tankuhr.settle(entry, actual=Decimal("1"))
    tankuhr.settle(entry, actual=Decimal("1"))
    assert tankuhr.fuel().day_spent == Decimal("1")


def test_a_reservation_over_the_daily_limit_is_refused_with_the_numbers(budget):
    tankuhr.reserve(amount=Decimal("9"))
    with pytest.raises(tankuhr.BudgetRefused, match=r"daily limit 10\.00 USD"):
        tankuhr.reserve(amount=Decimal("1.5"))
    assert SpendEntry.objects.count() == 1


def test_zone_follows_usage_with_half_open_boundaries(budget):
    tankuhr.reserve(amount=Decimal("2.99"))
    assert tankuhr.fuel().zone == "green"
    tankuhr.reserve(amount=Decimal("0.01"))
    assert tankuhr.fuel().zone == "yellow"  # exactly 30.0 %
    tankuhr.reserve(amount=Decimal("5"))
    assert tankuhr.fuel().zone == "red"


def test_days_and_months_are_counted_in_the_budgets_time_zone(budget):
    budget.timezone = "Europe/Berlin"
    budget.save()
    late_utc = datetime(2026, 3, 31, 22, 30, tzinfo=UTC)  # already 1 April in Berlin
    tankuhr.reserve(amount=Decimal("4"), now=late_utc)
    assert SpendDay.objects.get().day.isoformat() == "2026-04-01"
    assert tankuhr.fuel(now=late_utc).day_spent == Decimal("4")
    assert tankuhr.fuel(now=datetime(2026, 3, 31, 12, tzinfo=UTC)).month_spent == 0


def _reserve_concurrently(threads: int, amount: Decimal) -> tuple[int, int]:
    barrier = threading.Barrier(threads)
    outcomes: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        try:
            tankuhr.reserve(amount=amount)
            ok = True
        except tankuhr.BudgetRefused:
            ok = False
        finally:
            connections.close_all()
        with lock:
            outcomes.append(ok)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return outcomes.count(True), outcomes.count(False)


@pytest.mark.scaleout
@pytest.mark.django_db(transaction=True)
def test_concurrent_reservations_never_overshoot_the_limit(defaults):
    Budget.objects.filter(name="default").update(
        daily_limit_usd=Decimal("10"), monthly_limit_usd=Decimal("100")
    )
    granted, refused = _reserve_concurrently(24, Decimal("0.75"))
    assert granted == 13 and refused == 11, connection.vendor  # 13 × 0.75 = 9.75 ≤ 10 < 10.5
    day = tankuhr.local_today(tankuhr.budget())
    assert tankuhr.fuel().day_spent == Decimal("9.75") == tankuhr.ledger_totals(day)


@pytest.mark.scaleout
@pytest.mark.django_db(transaction=True)
@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    daily=st.decimals(min_value=Decimal("0.5"), max_value=Decimal("20"), places=2),
    amounts=st.lists(
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal("6"), places=4),
        min_size=2,
        max_size=16,
    ),
    spent_share=st.decimals(min_value=Decimal("0"), max_value=Decimal("1"), places=2),
)
def test_spend_never_exceeds_a_limit_under_concurrency(defaults, daily, amounts, spent_share):
    """Any mix of concurrent reservations, each settled at a share of what it held: the day's
    committed spend stays within the limit, and the rollup always equals the ledger."""
    SpendEntry.objects.all().delete()
    SpendDay.objects.all().delete()
    Budget.objects.filter(name="default").update(
        daily_limit_usd=daily, monthly_limit_usd=daily * 10
    )
    barrier = threading.Barrier(len(amounts))

    def worker(amount: Decimal) -> None:
        barrier.wait()
        try:
            entry = tankuhr.reserve(amount=amount)
        except tankuhr.BudgetRefused:
            connections.close_all()
            return
        try:
            tankuhr.settle(entry, actual=(amount * spent_share).quantize(Decimal("0.0001")))
        finally:
            connections.close_all()

    pool = [threading.Thread(target=worker, args=(a,)) for a in amounts]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    day = tankuhr.local_today(tankuhr.budget())
    committed = tankuhr.fuel().day_spent
    assert committed <= daily
    assert committed == tankuhr.ledger_totals(day)


def test_reserve_many_takes_the_requests_in_order_and_refuses_only_what_does_not_fit(budget):
    R = tankuhr.Reservation
    outcomes = tankuhr.reserve_many([R(Decimal("6")), R(Decimal("5")), R(Decimal("3"))])
    assert isinstance(outcomes[0], SpendEntry) and outcomes[0].pk
    assert isinstance(outcomes[1], tankuhr.BudgetRefused)
    assert "6.0000 USD committed today" in str(outcomes[1])
    assert isinstance(outcomes[2], SpendEntry), "a later, smaller request may still fit"
    assert tankuhr.fuel().day_spent == Decimal("9")
    assert SpendEntry.objects.filter(state=SpendState.HELD).count() == 2


def test_settle_many_settles_each_held_entry_once(budget):
    a, b = (tankuhr.reserve(amount=Decimal("2")) for _ in range(2))
    tankuhr.settle(a, actual=Decimal("1"))
    a.state = SpendState.HELD  # a stale copy: the row says settled already
    tankuhr.settle_many([(a, Decimal("1")), (b, Decimal("0.5")), (b, Decimal("0.5"))])
    today = tankuhr.local_today(budget)
    assert tankuhr.fuel().day_spent == Decimal("1.5") == tankuhr.ledger_totals(today)
    assert SpendDay.objects.get(day=today).settled_usd == Decimal("1.5")
    assert set(SpendEntry.objects.values_list("state", flat=True)) == {SpendState.SETTLED}
