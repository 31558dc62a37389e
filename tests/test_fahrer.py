"""The Fahrer end to end in-process: decide, drive on the Prüfstand, record, learn."""

import contextlib
import json
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from fahrtenbuch.models import (
    CircuitBreaker,
    Leg,
    RoutingPolicy,
    SpendEntry,
    TachoMinute,
    TrainingRun,
    Trip,
    TripEvent,
)
from garage import tankuhr
from garage.fahrer import Fahrer, InvalidOptions
from garage.models import Budget, FitnessCriteria, Provider

BUG = "Fix the authentication bug in the login module"


@pytest.fixture
def car(defaults, monkeypatch):
    monkeypatch.setenv("CLUTCH_PRUEFSTAND_LATENCY", "0")
    monkeypatch.delenv("CLUTCH_PRUEFSTAND", raising=False)
    monkeypatch.delenv("CLUTCH_PRUEFSTAND_FAULTS", raising=False)
    monkeypatch.setattr("garage.fahrt.RETRY_BASE_S", 0.0)
    from garage.motorblock import registry

    monkeypatch.setattr(registry, "_default_pruefstand", None)
    return defaults


def no_free_gears() -> None:
    """Switch off the zero-cost local providers, so nothing may drive in the red zone."""
    Provider.objects.filter(kind__in=["ollama", "llamacpp"]).update(enabled=False)


def spend(usage: str) -> None:
    """Fill the tank to ``usage`` of the daily limit."""
    b = Budget.objects.get(name="default")
    tankuhr.settle(
        tankuhr.reserve(amount=b.daily_limit_usd * Decimal(usage)),
        actual=b.daily_limit_usd * Decimal(usage),
    )


def dry_run(*args) -> dict:
    from io import StringIO

    out = StringIO()
    with contextlib.suppress(SystemExit):  # a refused trip exits 1 after printing
        call_command("fahren", *args, "--dry-run", "--json", "--seed", "1", stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_cli_dry_run_green_zone_chooses_bundesstrasse_tier3_throttle_07(car):
    result = dry_run(BUG)
    assert result["road"] == "bundesstrasse"
    assert (
        result["gear"]["tier"] == 3 and result["throttle"] == 0.7 and result["pattern"] == "single"
    )
    assert result["zone"] == "green"
    for key in ("confidence", "difficulty", "reasons", "estimated_cost_usd"):
        assert key in result
    assert {"name", "provider", "model_id", "tier"} <= set(result["gear"])
    assert Trip.objects.count() == 0, "a dry run records nothing"


def test_cli_dry_run_orange_zone_chooses_tier_two_or_less(car):
    spend("0.65")
    result = dry_run(BUG)
    assert result["zone"] == "orange" and result["gear"]["tier"] <= 2


def test_cli_dry_run_red_zone_refuses_a_paid_gear_with_a_reason(car):
    no_free_gears()
    spend("0.85")
    result = dry_run(BUG)
    assert result["zone"] == "red"
    assert result["refused"] and "paid gears are refused" in result["refused"]
    assert result["gear"] is None


def test_fahren_runs_on_the_pruefstand_and_records_everything(car):
    fahrer = Fahrer(seed=1)
    result = fahrer.fahren(BUG)
    assert result.ok and result.simulated
    assert result.config.gang.name == "claude-sonnet" and result.config.gang.provider == "anthropic"
    assert result.config.gas.wert == 0.7
    assert "Prüfstand" in result.output
    trip = Trip.objects.get(pk=result.trip_id)
    assert trip.status == "succeeded" and trip.output_tokens > 0 and trip.cost_usd > 0
    assert trip.latency_ms is not None and trip.ttft_ms is not None
    leg = Leg.objects.get(trip=trip)
    assert leg.status == "succeeded" and leg.attempts[-1]["outcome"] == "ok"
    assert SpendEntry.objects.get(trip=trip).actual_usd == trip.cost_usd
    assert tankuhr.fuel().day_spent == trip.cost_usd
    kinds = list(TripEvent.objects.filter(trip=trip).values_list("kind", flat=True))
    assert kinds[0] == "decision" and "output" in kinds and kinds[-1] == "status"
    assert TachoMinute.objects.get().trips == 1


def test_fahren_json_prints_the_run_fields(car):
    from io import StringIO

    out = StringIO()
    call_command("fahren", "Write a haiku about gearboxes", "--json", stdout=out)
    result = json.loads(out.getvalue())
    for key in ("trip_id", "status", "output", "usage", "cost_usd", "latency_ms"):
        assert key in result
    assert result["status"] == "succeeded" and result["usage"]["output_tokens"] > 0


def test_a_handler_runs_the_call_like_the_original(car):
    seen = {}

    def handler(prompt, config):
        seen["prompt"], seen["gear"] = prompt, config["gear"]
        return {"output": "patched", "usage": {"input_tokens": 10, "output_tokens": 5}}

    result = Fahrer(seed=1).fahren(BUG, handler=handler)
    assert result.output == "patched" and seen["prompt"] == BUG and seen["gear"] == "claude-sonnet"
    assert result.usage["input_tokens"] == 10


def test_retryable_faults_are_retried_then_fail_over(car):
    plan = {"fail_first": 3, "error_kinds": ["overloaded"], "latency_scale": 0}
    result = Fahrer(seed=1).fahren(BUG, pruefstand=plan)
    trip = Trip.objects.get(pk=result.trip_id)
    assert trip.status == "succeeded"
    assert trip.retries == 2 and trip.failovers == 1
    leg = trip.legs.get()
    assert [a["outcome"] for a in leg.attempts] == ["error", "error", "error", "ok"]
    assert leg.gear_name != "claude-sonnet"
    assert TripEvent.objects.filter(trip=trip, kind="failover").exists()
    failover = [r for r in trip.reasons if r["step"] == "failover"]
    assert len(failover) == 1 and failover[0]["data"]["from"] == "claude-sonnet"
    assert "failed over to" in failover[0]["message"]
    assert CircuitBreaker.objects.get(gear__name="claude-sonnet").state == "open"


def test_an_invalid_request_fails_fast_with_the_message(car):
    result = Fahrer(seed=1).fahren(
        BUG, pruefstand={"fail_first": 1, "error_kinds": ["invalid_request"]}
    )
    trip = Trip.objects.get(pk=result.trip_id)
    assert (
        trip.status == "failed"
        and "Invalid request" in trip.error
        and trip.error_kind == "invalid_request"
    )
    assert len(trip.legs.get().attempts) == 1


def test_credentials_failure_marks_the_provider_misconfigured(car):
    result = Fahrer(seed=1).fahren(
        BUG, pruefstand={"fail_first": 1, "error_kinds": ["credentials"]}
    )
    assert Trip.objects.get(pk=result.trip_id).failovers == 1
    assert CircuitBreaker.objects.get(gear__name="claude-sonnet").state == "open"
    assert "Invalid API key" in Provider.objects.get(name="anthropic").misconfigured


def test_red_zone_trip_is_recorded_as_refused_with_its_reason(car):
    no_free_gears()
    spend("0.85")
    result = Fahrer(seed=1).fahren(BUG)
    trip = Trip.objects.get(pk=result.trip_id)
    assert trip.status == "refused" and "paid gears are refused" in trip.error
    assert not trip.legs.exists()


@pytest.mark.parametrize(
    "task,options,message",
    [
        ("   ", {}, "empty"),
        (BUG, {"throttle": 1.5}, "throttle"),
        (BUG, {"pattern": "zigzag"}, "pattern"),
        (BUG, {"tempo": "slow"}, "tempo"),
        (BUG, {"items": "not a list"}, "items"),
    ],
)
def test_bad_input_is_refused_with_what_to_fix(car, task, options, message):
    with pytest.raises(InvalidOptions, match=message):
        Fahrer().fahren(task, **options)
    assert Trip.objects.count() == 0


def test_a_task_over_the_limit_says_the_limit(car, settings):
    settings.CLUTCH_MAX_TASK_CHARS = 100
    with pytest.raises(InvalidOptions, match="limit is 100") as info:
        Fahrer().fahren("x" * 101)
    assert info.value.status == 413


def test_cli_errors_are_clear(car):
    with pytest.raises(CommandError, match="Give a task"):
        call_command("fahren")
    with pytest.raises(CommandError, match="throttle"):
        call_command("fahren", BUG, "--throttle", "3", "--dry-run")


def test_status_reports_zone_gearbox_and_health(car):
    status = Fahrer().status()
    assert status["tankuhr"]["zone"] == "green"
    assert status["getriebe"].startswith("Getriebe[")
    assert "bordcomputer" in status and "tacho" in status
    sonnet = next(g for g in status["gears"] if g["name"] == "claude-sonnet")
    assert sonnet["available"] and sonnet["simulated"]


def test_without_stand_in_a_gear_without_key_is_unavailable_and_says_which_variable(
    car, monkeypatch
):
    monkeypatch.setenv("CLUTCH_PRUEFSTAND", "0")
    sonnet = next(g for g in Fahrer().status()["gears"] if g["name"] == "claude-sonnet")
    assert not sonnet["available"] and "ANTHROPIC_API_KEY" in sonnet["why_not"]


def test_training_writes_a_policy_that_kupplung_then_uses(car):
    FitnessCriteria.objects.update(min_samples=3)
    fahrer = Fahrer(seed=1)
    for _ in range(3):
        fahrer.fahren(BUG, gear="gemini-flash")
    report = fahrer.trainieren()
    assert report["policy"]["bundesstrasse"]["gear"] == "gemini-flash"
    policy = RoutingPolicy.objects.get(road__slug="bundesstrasse")
    assert policy.samples == 3
    run = TrainingRun.objects.get()
    assert run.epsilon_after == pytest.approx(0.10 * 0.995)
    decision = fahrer.entscheiden(BUG)
    assert decision.gear.name == "gemini-flash" and decision.reasons[0].data["source"] == "policy"


def test_epsilon_decays_per_run_to_its_floor_and_survives_restarts(car):
    FitnessCriteria.objects.update(epsilon_start=0.021, epsilon_decay=0.5, epsilon_floor=0.02)
    Fahrer().trainieren()
    Fahrer().trainieren()
    assert TrainingRun.objects.order_by("-id").first().epsilon_after == 0.02
    assert Fahrer().lage().epsilon == 0.02


def test_thumbs_down_feedback_lowers_fitness(car):
    from fahrtenbuch.services import trip_feedback
    from garage.fahrschule import fitness_table

    FitnessCriteria.objects.update(min_samples=1)
    fahrer = Fahrer(seed=1)
    trip = Trip.objects.get(pk=fahrer.fahren(BUG).trip_id)
    before = fitness_table(FitnessCriteria.objects.get())[0].fitness
    trip_feedback(trip, thumbs=-1, note="wrong file")
    after = fitness_table(FitnessCriteria.objects.get())[0].fitness
    assert after < before


def test_red_zone_drives_a_zero_cost_local_gear_when_one_is_available(car):
    Provider.objects.filter(kind="ollama").update(probe_ok=True)  # as if `providers` saw it up
    spend("0.85")
    decision = Fahrer(seed=1).entscheiden(BUG)
    assert decision.zone == "red" and not decision.is_refused
    assert decision.gear.is_free and decision.gear.provider_kind in ("ollama", "llamacpp")
    assert any(
        r.step == "constraint" and "paid gears are refused" in r.message for r in decision.reasons
    )


def test_after_training_on_enough_trips_the_lernrouter_takes_the_base_step(car):
    from django.contrib.auth import get_user_model

    from garage.models import Gear

    user = get_user_model().objects.create_user("trainer")
    haiku, flash = Gear.objects.get(name="claude-haiku"), Gear.objects.get(name="gemini-flash")
    for i in range(25):
        for gear, status in ((haiku, "succeeded"), (flash, "failed")):
            Trip.objects.create(
                user=user,
                task=f"Fix the login bug number {i}",
                road="bundesstrasse",
                gear=gear,
                gear_name=gear.name,
                status=status,
                throttle=0.7,
                cost_usd=Decimal("0.001"),
                latency_ms=900,
            )
    report = Fahrer().trainieren()
    assert report["lernrouter"]["trained"], report["lernrouter"]
    decision = Fahrer(seed=1).entscheiden("Fix the login bug in the session handling")
    assert decision.reasons[0].data["source"] == "lernrouter"
    assert decision.gear.name == "claude-haiku"
    assert Fahrer(seed=1).entscheiden(BUG, gear="claude-opus").gear.name == "claude-opus"


def test_a_preview_does_not_explore(car):
    FitnessCriteria.objects.update(epsilon_start=1.0)
    decisions = {Fahrer().entscheiden(BUG).gear.name for _ in range(10)}
    assert decisions == {"claude-sonnet"}


def test_cli_reads_one_task_per_line_and_prints_one_json_object_each(car, tmp_path):
    from io import StringIO

    tasks = tmp_path / "tasks.txt"
    tasks.write_text(
        "Fix typo in README\n\nBehebe den Fehler im Login\nWrite unit tests for the parser\n"
    )
    out = StringIO()
    call_command("fahren", "--file", str(tasks), "--dry-run", "--json", stdout=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["road"] for line in lines] == ["feldweg", "bundesstrasse", "testfahrt"]
    assert all(line["gear"]["tier"] >= 1 and "reasons" in line for line in lines)


def test_trainieren_command_prints_the_run_as_json(car):
    from io import StringIO

    Fahrer(seed=1).fahren(BUG)
    out = StringIO()
    call_command("trainieren", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert report["trips_considered"] == 1 and report["epsilon_after"] < report["epsilon_before"]
    assert set(report["policy"]) == {
        "feldweg",
        "landstrasse",
        "bundesstrasse",
        "autobahn",
        "pruefstrecke",
        "rallye",
        "konvoi",
        "teamfahrt",
        "langstrecke",
        "testfahrt",
    }


def test_a_rejected_key_blocks_its_provider_until_the_key_is_changed(car, monkeypatch):
    from garage import getriebe
    from garage.fahrt import Fahrt
    from garage.models import Gear
    from garage.motorblock.base import ErrorKind, MotorError

    monkeypatch.setenv("CLUTCH_PRUEFSTAND", "0")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-old-key")
    sonnet = Gear.objects.select_related("provider").get(name="claude-sonnet")
    Fahrt._feed_failure(
        sonnet, MotorError(ErrorKind.CREDENTIALS, "anthropic answered 401: invalid x-api-key")
    )
    why = getriebe.load_gearbox()[2]["claude-sonnet"]
    assert why.startswith("credentials rejected") and "ANTHROPIC_API_KEY" in why
    assert "sk-ant-old-key" not in why and "sk-ant-old-key" not in str(
        Provider.objects.get(name="anthropic").__dict__
    )
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-new-key")
    assert "claude-sonnet" not in getriebe.load_gearbox()[2]


def test_decisions_read_fuel_and_breakers_at_most_once_per_ttl(
    defaults, monkeypatch, django_assert_num_queries
):
    from garage import getriebe

    monkeypatch.setenv("CLUTCH_LAGE_TTL_S", "60")
    monkeypatch.setenv("CLUTCH_TABLES_TTL_S", "60")  # the tables have their own cache
    monkeypatch.setattr(getriebe, "_moment", None)
    getriebe.load_lage()  # reads budget, spend and breakers
    with django_assert_num_queries(0):
        lage = getriebe.load_lage()
    assert lage.fuel.zone == "green"
    monkeypatch.setenv("CLUTCH_LAGE_TTL_S", "0")
    with django_assert_num_queries(3):
        getriebe.load_lage()
