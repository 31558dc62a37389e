"""full_clean refuses values an admin could type but the engine cannot drive with."""

from decimal import Decimal

import pytest
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, transaction

from fahrtenbuch.models import Trip
from garage.models import Budget, FitnessCriteria, Gear, Provider, Road


def _errors(instance) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        instance.full_clean()
    return caught.value.message_dict


def _with(instance, **changes):
    for field, value in changes.items():
        setattr(instance, field, value)
    return instance


@pytest.fixture
def road(defaults) -> Road:
    return Road.objects.get(slug="konvoi")


@pytest.fixture
def gear(defaults) -> Gear:
    return Gear.objects.get(name="gemini-flash")


@pytest.fixture
def budget(defaults) -> Budget:
    return Budget.objects.get()


@pytest.fixture
def fitness(defaults) -> FitnessCriteria:
    return FitnessCriteria.objects.get()


@pytest.fixture
def provider(defaults) -> Provider:
    return Provider.objects.get(name="anthropic")


def test_the_imported_defaults_are_valid(defaults):
    for model in (Provider, Gear, Road, Budget, FitnessCriteria):
        for instance in model.objects.all():
            instance.full_clean()


@pytest.mark.parametrize(
    ("throttle", "message"),
    [
        (1.5, "Ensure this value is less than or equal to 1.0."),
        (-0.1, "Ensure this value is greater than or equal to 0.0."),
    ],
)
def test_road_throttle_outside_0_to_1(road, throttle, message):
    assert _errors(_with(road, throttle=throttle)) == {"throttle": [message]}


def test_road_difficulty_above_1(road):
    assert _errors(_with(road, difficulty=1.2)) == {
        "difficulty": ["Ensure this value is less than or equal to 1.0."]
    }


@pytest.mark.parametrize(
    ("tier", "message"),
    [
        (0, "Ensure this value is greater than or equal to 1."),
        (6, "Ensure this value is less than or equal to 5."),
    ],
)
def test_gear_tier_outside_1_to_5(gear, tier, message):
    assert _errors(_with(gear, tier=tier)) == {"tier": [message]}


@pytest.mark.parametrize(
    "field", ["input_price", "output_price", "cached_input_price", "thinking_price"]
)
def test_gear_negative_price(gear, field):
    assert _errors(_with(gear, **{field: Decimal("-0.01")})) == {
        field: ["Ensure this value is greater than or equal to 0."]
    }


def test_road_whose_default_gear_is_disabled(road, gear):
    Gear.objects.filter(pk=gear.pk).update(enabled=False)

    errors = _errors(_with(road, default_gear=Gear.objects.get(pk=gear.pk)))

    assert errors == {
        "default_gear": [
            "Gear gemini-flash is disabled; choose an enabled gear or enable it first."
        ]
    }


def test_disabling_a_gear_that_is_a_roads_default(defaults):
    haiku = Gear.objects.get(name="claude-haiku")

    errors = _errors(_with(haiku, enabled=False))

    assert errors == {
        "enabled": [
            "claude-haiku is the default gear of feldweg, rallye; "
            "give those roads another gear before disabling it."
        ]
    }


def test_disabling_a_gear_no_road_uses_is_fine(gear):
    _with(gear, enabled=False).full_clean()


@pytest.mark.parametrize(
    ("yellow", "orange", "red"),
    [
        ("0.60", "0.30", "0.80"),
        ("0.30", "0.60", "0.60"),
        ("0", "0.60", "0.80"),
        ("0.3", "0.6", "1.2"),
    ],
)
def test_budget_zone_thresholds_must_rise(budget, yellow, orange, red):
    errors = _errors(
        _with(
            budget, yellow_from=Decimal(yellow), orange_from=Decimal(orange), red_from=Decimal(red)
        )
    )

    assert "Zone thresholds must rise: 0 < yellow < orange < red ≤ 1" in " ".join(
        errors["red_from"]
    )


def test_budget_tier_caps_may_not_grow_as_the_tank_empties(budget):
    errors = _errors(_with(budget, yellow_max_tier=2, orange_max_tier=3))

    assert errors == {
        "red_max_tier": [
            "Tier caps may not grow as the tank empties: green ≥ yellow ≥ orange ≥ red."
        ]
    }


def test_budget_daily_limit_above_monthly(budget):
    errors = _errors(_with(budget, daily_limit_usd=Decimal("600.00")))

    assert errors == {"daily_limit_usd": ["The daily limit cannot exceed the monthly limit."]}


def test_budget_unknown_time_zone(budget):
    errors = _errors(_with(budget, timezone="Mars/Olympus_Mons"))

    assert errors == {
        "timezone": ["Unknown time zone 'Mars/Olympus_Mons'; use a name like Europe/Berlin."]
    }


def test_budget_known_time_zone_is_fine(budget):
    _with(budget, timezone="Europe/Berlin").full_clean()


def test_fitness_weights_must_add_up_to_1(fitness):
    errors = _errors(_with(fitness, weight_speed=0.5))

    assert errors == {
        NON_FIELD_ERRORS: ["The four weights must add up to 1 (they add up to 1.300)."]
    }


def test_fitness_epsilon_floor_above_start(fitness):
    errors = _errors(_with(fitness, epsilon_floor=0.2, epsilon_start=0.1))

    assert errors == {"epsilon_floor": ["The ε floor cannot exceed the start value."]}


@pytest.mark.parametrize("api_key_env", ["ANTHROPIC_API_KEY", ["ANTHROPIC_API_KEY", ""], [1]])
def test_provider_api_key_env_must_be_a_list_of_names(provider, api_key_env):
    errors = _errors(_with(provider, api_key_env=api_key_env))

    assert errors == {"api_key_env": ['Give a list of variable names, e.g. ["ANTHROPIC_API_KEY"].']}


def test_provider_base_url_needs_a_scheme(provider):
    errors = _errors(_with(provider, base_url="api.anthropic.com"))

    assert errors == {"base_url": ["The base URL must start with http:// or https://."]}


def test_trip_throttle_outside_0_to_1_is_refused_by_the_database(db):
    with pytest.raises(IntegrityError), transaction.atomic():
        Trip.objects.create(task="t", throttle=1.5)

    Trip.objects.create(task="t", throttle=1.0)
    assert list(Trip.objects.values_list("throttle", flat=True)) == [1.0]
