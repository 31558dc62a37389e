"""Circuit breakers shared through the database, latency percentiles, anomaly flags."""

from datetime import timedelta

import pytest
from django.utils import timezone

from fahrtenbuch.models import BreakerState, CircuitBreaker, Leg, Trip
from garage import bordcomputer
from garage.models import Gear


@pytest.fixture
def gear(defaults):
    return Gear.objects.get(name="claude-sonnet")


def test_three_consecutive_failures_open_the_breaker(gear):
    assert bordcomputer.record_failure(gear, "529 overloaded") == BreakerState.CLOSED
    assert bordcomputer.record_failure(gear, "529 overloaded") == BreakerState.CLOSED
    assert bordcomputer.record_failure(gear, "529 overloaded") == BreakerState.OPEN
    assert "claude-sonnet" in bordcomputer.open_breakers()
    assert not bordcomputer.acquire(gear)


def test_a_success_resets_the_consecutive_count(gear):
    bordcomputer.record_failure(gear, "x")
    bordcomputer.record_failure(gear, "x")
    bordcomputer.record_success(gear)
    assert bordcomputer.record_failure(gear, "x") == BreakerState.CLOSED


def test_five_failures_within_an_hour_open_it_even_with_successes_between(gear):
    now = timezone.now()
    for i in range(4):
        assert (
            bordcomputer.record_failure(gear, "x", now=now + timedelta(minutes=i))
            == BreakerState.CLOSED
        )
        bordcomputer.record_success(gear)
    assert (
        bordcomputer.record_failure(gear, "x", now=now + timedelta(minutes=5)) == BreakerState.OPEN
    )


def test_after_the_cooldown_exactly_one_probe_goes_through(gear):
    start = timezone.now()
    for _ in range(3):
        bordcomputer.record_failure(gear, "x", now=start)
    later = start + timedelta(seconds=301)
    assert bordcomputer.acquire(gear, now=later) is True
    assert bordcomputer.acquire(gear, now=later) is False  # the probe is under way
    assert CircuitBreaker.objects.get(gear=gear).state == BreakerState.HALF_OPEN
    bordcomputer.record_success(gear)
    assert CircuitBreaker.objects.get(gear=gear).state == BreakerState.CLOSED
    assert bordcomputer.acquire(gear)


def test_a_failed_probe_opens_the_breaker_again(gear):
    start = timezone.now()
    for _ in range(3):
        bordcomputer.record_failure(gear, "x", now=start)
    later = start + timedelta(seconds=301)
    assert bordcomputer.acquire(gear, now=later)
    assert bordcomputer.record_failure(gear, "still down", now=later) == BreakerState.OPEN
    assert not bordcomputer.acquire(gear, now=later + timedelta(seconds=10))


def test_credentials_failure_opens_at_once(gear):
    assert bordcomputer.record_failure(gear, "401", force_open=True) == BreakerState.OPEN


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))
    assert bordcomputer.percentile(values, 50) == 50
    assert bordcomputer.percentile(values, 95) == 95
    assert bordcomputer.percentile([], 50) is None


def test_latency_reads_p50_p95_of_total_and_first_token(gear):
    trip = Trip.objects.create(task="t")
    for i in range(1, 21):
        Leg.objects.create(
            trip=trip, position=i, gear=gear, status="succeeded", latency_ms=i * 100, ttft_ms=i * 10
        )
    lat = bordcomputer.latency(gear.pk)
    assert (lat.samples, lat.p50_ms, lat.p95_ms, lat.ttft_p50_ms, lat.ttft_p95_ms) == (
        20,
        1000,
        1900,
        100,
        190,
    )


def test_token_explosion_and_latency_outliers_are_flagged(gear):
    for i in range(20):
        Trip.objects.create(
            task="t",
            road="feldweg",
            gear=gear,
            status="succeeded",
            output_tokens=100 + i,
            latency_ms=1000 + 10 * (i % 5),
        )
    flags = bordcomputer.anomalies(
        gear_id=gear.pk, road="feldweg", output_tokens=500, latency_ms=5000
    )
    assert {f["kind"] for f in flags} == {"token_explosion", "latency_outlier"}
    assert (
        bordcomputer.anomalies(gear_id=gear.pk, road="feldweg", output_tokens=110, latency_ms=1010)
        == []
    )
