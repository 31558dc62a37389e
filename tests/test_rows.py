"""update_many writes every kind of field a leg carries, row by row, in one statement."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from clutch_site.rows import update_many
from fahrtenbuch.models import Leg, Trip
from garage.models import Gear


@pytest.mark.django_db
def test_update_many_writes_json_decimal_datetime_and_foreign_keys(defaults, member):
    trip = Trip.objects.create(user=member, task="t")
    legs = Leg.objects.bulk_create(
        [Leg(trip=trip, position=i, phase=0, role="item", prompt="p") for i in (1, 2)]
    )
    gear = Gear.objects.first()
    when = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    for i, leg in enumerate(legs):
        leg.gear, leg.gear_name, leg.status = gear, gear.name, "succeeded"
        leg.attempts = [{"gear": gear.name, "outcome": "ok", "n": i}]
        leg.cost_usd, leg.finished_at, leg.output = Decimal("0.00012345"), when, f"out {i}"
    update_many(
        legs, ["gear", "gear_name", "status", "attempts", "cost_usd", "finished_at", "output"]
    )
    stored = list(Leg.objects.order_by("position"))
    assert [leg.output for leg in stored] == ["out 0", "out 1"]
    assert stored[1].attempts == [{"gear": gear.name, "outcome": "ok", "n": 1}]
    assert stored[0].gear_id == gear.pk and stored[0].cost_usd == Decimal("0.00012345")
    assert stored[0].finished_at == when and stored[0].status == "succeeded"


@pytest.mark.django_db
def test_add_to_adds_amounts_and_says_whether_a_row_was_there():
    from datetime import date

    from clutch_site.rows import add_to
    from fahrtenbuch.models import SpendDay

    day = date(2026, 11, 26)
    assert add_to(SpendDay, {"day": day}, committed_usd=Decimal("1")) == 0
    SpendDay.objects.create(day=day, committed_usd=Decimal("0.1"), settled_usd=Decimal("0"))
    assert add_to(SpendDay, {"day": day}, committed_usd=Decimal("0.00000002")) == 1
    add_to(SpendDay, {"day": day}, committed_usd=Decimal("-0.05"), settled_usd=Decimal("0.3"))
    row = SpendDay.objects.get(day=day)
    assert row.committed_usd == Decimal("0.05000002") and row.settled_usd == Decimal("0.3")
