"""The default-table import: what it creates, what a re-import keeps, and broken files."""

import json
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from garage.defaults import ConfigError, import_defaults
from garage.models import Budget, FitnessCriteria, Gear, ImportedDefault, Provider, Road

ROADS = [
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
]
GARAGE_MODELS = (Provider, Gear, Road, Budget, FitnessCriteria)


def _config(directory: Path, filename: str) -> dict:
    return json.loads((directory / filename).read_text(encoding="utf-8"))


def _named(items: list[dict], key: str, field: str = "name") -> dict:
    return next(item for item in items if item[field] == key)


def _price(directory: Path, gear: str, kind: str) -> Decimal:
    gears = _config(directory, "gears.json")["gears"]
    return Decimal(_named(gears, gear)["prices_usd_per_mtok"][kind])


def _garage_rows() -> dict[str, list[dict]]:
    return {m.__name__: list(m.objects.order_by("pk").values()) for m in GARAGE_MODELS}


def _row_count(directory: Path) -> int:
    providers = _config(directory, "providers.json")["providers"]
    gears = _config(directory, "gears.json")["gears"]
    roads = _config(directory, "roads.json")["roads"]
    return len(providers) + len(gears) + len(roads) + 2  # one budget, one fitness criteria


# --- a first import ----------------------------------------------------------------------


@pytest.mark.scaleout
def test_first_import_creates_every_default_row(db, settings):
    report = import_defaults(settings.CLUTCH_CONFIG_DIR)

    config = settings.CLUTCH_CONFIG_DIR
    assert list(Road.objects.order_by("order").values_list("slug", flat=True)) == ROADS
    assert set(Gear.objects.values_list("name", flat=True)) == {
        g["name"] for g in _config(config, "gears.json")["gears"]
    }
    assert set(Provider.objects.values_list("name", flat=True)) == {
        p["name"] for p in _config(config, "providers.json")["providers"]
    }
    assert (report.created, report.updated, report.kept) == (_row_count(config), 0, 0)


def test_first_import_links_gears_and_roads_as_the_files_say(defaults, settings):
    haiku = Gear.objects.get(name="claude-haiku")
    assert haiku.provider.name == "anthropic"
    assert (haiku.tier, haiku.input_price, haiku.output_price) == (
        1,
        _price(settings.CLUTCH_CONFIG_DIR, "claude-haiku", "input"),
        _price(settings.CLUTCH_CONFIG_DIR, "claude-haiku", "output"),
    )
    landstrasse = Road.objects.get(slug="landstrasse")
    assert landstrasse.default_gear.name == "claude-sonnet"
    assert landstrasse.is_fallback
    assert list(Road.objects.filter(is_fallback=True).values_list("slug", flat=True)) == [
        "landstrasse"
    ]
    assert Road.objects.get(slug="rallye").pattern == "swarm"


def test_first_import_creates_budget_and_fitness_criteria(defaults):
    budget = Budget.objects.get()
    assert (budget.name, budget.daily_limit_usd, budget.monthly_limit_usd) == (
        "default",
        Decimal("50.00"),
        Decimal("500.00"),
    )
    assert (budget.yellow_from, budget.orange_from, budget.red_from) == (
        Decimal("0.30"),
        Decimal("0.60"),
        Decimal("0.80"),
    )
    assert (
        budget.green_max_tier,
        budget.yellow_max_tier,
        budget.orange_max_tier,
        budget.red_max_tier,
    ) == (5, 3, 2, 0)
    fitness = FitnessCriteria.objects.get()
    assert (
        fitness.weight_efficiency,
        fitness.weight_quality,
        fitness.weight_speed,
        fitness.weight_reliability,
    ) == (0.30, 0.35, 0.20, 0.15)
    assert (fitness.min_samples, fitness.epsilon_start, fitness.epsilon_floor) == (20, 0.10, 0.02)
    assert fitness.reference_cost_usd == Decimal("0.01")


# --- re-imports --------------------------------------------------------------------------


@pytest.mark.scaleout
def test_second_import_creates_and_updates_nothing(defaults, settings):
    before = _garage_rows()

    report = import_defaults(settings.CLUTCH_CONFIG_DIR)

    assert (report.created, report.updated, report.kept) == (0, 0, 0)
    assert _garage_rows() == before


def test_reimport_keeps_admin_edit(defaults, settings):
    Gear.objects.filter(name="claude-sonnet").update(output_price=Decimal("99"))
    Road.objects.filter(slug="feldweg").update(throttle=0.8)
    Budget.objects.update(daily_limit_usd=Decimal("20.00"))

    report = import_defaults(settings.CLUTCH_CONFIG_DIR)

    assert (report.created, report.updated, report.kept) == (0, 0, 3)
    assert Gear.objects.get(name="claude-sonnet").output_price == Decimal("99")
    assert Road.objects.get(slug="feldweg").throttle == 0.8
    assert Budget.objects.get().daily_limit_usd == Decimal("20.00")


def test_reimport_keeps_admin_edit_even_when_the_file_changes_that_row(
    db, settings, config_dir, edit_config
):
    import_defaults(config_dir)
    Gear.objects.filter(name="claude-sonnet").update(label="Our Sonnet")
    edit_config(
        "gears.json",
        lambda d: _named(d["gears"], "claude-sonnet")["prices_usd_per_mtok"].update(input="9.00"),
    )

    report = import_defaults(config_dir)

    sonnet = Gear.objects.get(name="claude-sonnet")
    assert (sonnet.label, sonnet.input_price) == (
        "Our Sonnet",
        _price(settings.CLUTCH_CONFIG_DIR, "claude-sonnet", "input"),
    )
    assert (report.updated, report.kept) == (0, 1)


def test_reimport_updates_untouched_row_when_the_file_changes(db, config_dir, edit_config):
    import_defaults(config_dir)
    edit_config(
        "gears.json",
        lambda d: _named(d["gears"], "claude-haiku")["prices_usd_per_mtok"].update(output="0.60"),
    )
    edit_config("roads.json", lambda d: _named(d["roads"], "konvoi", "slug").update(throttle=0.4))

    report = import_defaults(config_dir)

    assert (report.created, report.updated, report.kept) == (0, 2, 0)
    assert Gear.objects.get(name="claude-haiku").output_price == Decimal("0.60")
    assert Road.objects.get(slug="konvoi").throttle == 0.4


def test_reimport_creates_a_gear_added_to_the_file(db, config_dir, edit_config):
    import_defaults(config_dir)

    def add_gear(data: dict) -> None:
        new = dict(_named(data["gears"], "pruefstand-g1"), name="pruefstand-g0", label="G0")
        data["gears"].append(new)

    edit_config("gears.json", add_gear)

    report = import_defaults(config_dir)

    assert (report.created, report.updated) == (1, 0)
    assert Gear.objects.get(name="pruefstand-g0").provider.name == "pruefstand"


def test_reimport_does_not_recreate_a_row_the_admin_deleted(defaults, settings):
    Gear.objects.filter(name="gemini-flash").delete()

    report = import_defaults(settings.CLUTCH_CONFIG_DIR)

    assert not Gear.objects.filter(name="gemini-flash").exists()
    assert (report.created, report.kept) == (0, 1)


def test_reimport_after_the_admin_deleted_a_provider_and_its_gears(defaults, settings):
    Gear.objects.filter(provider__name="gemini").delete()
    Provider.objects.filter(name="gemini").delete()

    report = import_defaults(settings.CLUTCH_CONFIG_DIR)

    assert not Provider.objects.filter(name="gemini").exists()
    assert not Gear.objects.filter(name__startswith="gemini").exists()
    assert (report.created, report.updated, report.kept) == (0, 0, 3)


def test_reimport_after_the_admin_moved_roads_off_a_gear_and_deleted_it(defaults, settings):
    Road.objects.filter(default_gear__name="claude-haiku").update(
        default_gear=Gear.objects.get(name="pruefstand-g1")
    )
    Gear.objects.filter(name="claude-haiku").delete()

    report = import_defaults(settings.CLUTCH_CONFIG_DIR)

    assert not Gear.objects.filter(name="claude-haiku").exists()
    assert set(
        Road.objects.filter(slug__in=["feldweg", "rallye"]).values_list(
            "default_gear__name", flat=True
        )
    ) == {"pruefstand-g1"}
    assert (report.created, report.updated, report.kept) == (0, 0, 3)


def test_moving_the_fallback_road_in_the_file_is_imported(db, config_dir, edit_config):
    import_defaults(config_dir)

    def move_fallback(data: dict) -> None:
        _named(data["roads"], "landstrasse", "slug")["fallback"] = False
        _named(data["roads"], "feldweg", "slug")["fallback"] = True

    edit_config("roads.json", move_fallback)

    report = import_defaults(config_dir)

    assert list(Road.objects.filter(is_fallback=True).values_list("slug", flat=True)) == ["feldweg"]
    assert report.updated == 2


def test_reset_overwrites_admin_edits_and_brings_back_deleted_rows(defaults, settings):
    Gear.objects.filter(name="claude-sonnet").update(output_price=Decimal("99"))
    Gear.objects.filter(name="gemini-flash").delete()

    report = import_defaults(settings.CLUTCH_CONFIG_DIR, reset=True)

    assert Gear.objects.get(name="claude-sonnet").output_price == _price(
        settings.CLUTCH_CONFIG_DIR, "claude-sonnet", "output"
    )
    assert Gear.objects.filter(name="gemini-flash").exists()
    assert (report.created, report.updated, report.kept) == (1, 1, 0)
    # After a reset the rows count as untouched defaults again.
    assert (import_defaults(settings.CLUTCH_CONFIG_DIR).kept, ImportedDefault.objects.count()) == (
        0,
        _row_count(settings.CLUTCH_CONFIG_DIR),
    )


# --- the management command --------------------------------------------------------------


def _setup(*args: str) -> str:
    out = StringIO()
    call_command("clutch_setup", *args, stdout=out)
    return out.getvalue()


def test_clutch_setup_prints_what_it_did(db, settings):
    first = _setup()
    second = _setup()

    created = _row_count(settings.CLUTCH_CONFIG_DIR)
    assert f"{created} created, 0 updated, 0 kept as edited" in first
    assert str(settings.CLUTCH_CONFIG_DIR) in first
    assert "0 created, 0 updated, 0 kept as edited" in second
    assert Road.objects.count() == len(ROADS)


def test_clutch_setup_reset_overwrites_admin_edit(defaults):
    Road.objects.filter(slug="feldweg").update(throttle=0.9)

    assert "0 updated, 1 kept as edited" in _setup()
    assert Road.objects.get(slug="feldweg").throttle == 0.9

    assert "1 updated, 0 kept as edited" in _setup("--reset")
    assert Road.objects.get(slug="feldweg").throttle == 0.3


def test_clutch_setup_reads_the_config_dir_it_is_given(db, config_dir, edit_config):
    edit_config("budget.json", lambda d: d["budget"].update(daily_limit_usd="7.00"))

    output = _setup("--config-dir", str(config_dir))

    assert str(config_dir) in output
    assert Budget.objects.get().daily_limit_usd == Decimal("7.00")


def test_clutch_setup_refuses_a_broken_config_and_changes_nothing(
    defaults, config_dir, edit_config, db_snapshot
):
    edit_config("gears.json", lambda d: _named(d["gears"], "claude-haiku").update(tier=7))
    before = db_snapshot()

    with pytest.raises(CommandError) as caught:
        _setup("--config-dir", str(config_dir))

    message = str(caught.value)
    assert "nothing changed" in message
    assert "gears.json" in message
    assert "gears[claude-haiku]" in message
    assert db_snapshot() == before


# --- broken files ------------------------------------------------------------------------
# Each case breaks the copied config and returns the words the error must contain.


def _invalid_json(config_dir: Path, edit) -> list[str]:
    path = config_dir / "roads.json"
    lines = path.read_text(encoding="utf-8").splitlines()
    number = next(i for i, line in enumerate(lines, 1) if '"slug": "konvoi"' in line)
    lines[number - 1] = lines[number - 1].replace('"slug": "konvoi",', '"slug": "konvoi",,')
    path.write_text("\n".join(lines), encoding="utf-8")
    return ["roads.json", f"line {number}", "not valid JSON"]


def _missing_key(config_dir: Path, edit) -> list[str]:
    edit("gears.json", lambda d: _named(d["gears"], "claude-opus").pop("model_id"))
    return ["gears.json", "gears[claude-opus].model_id", "missing"]


def _wrong_type(config_dir: Path, edit) -> list[str]:
    edit("gears.json", lambda d: _named(d["gears"], "claude-sonnet").update(tier="five"))
    return ["gears.json", "gears[claude-sonnet].tier", "must be a number"]


def _date_not_a_string(config_dir: Path, edit) -> list[str]:
    edit("gears.json", lambda d: _named(d["gears"], "claude-haiku").update(prices_as_of=20261126))
    return ["gears.json", "gears[claude-haiku].prices_as_of", "must be a date"]


def _not_a_finite_number(config_dir: Path, edit) -> list[str]:
    edit(
        "roads.json",
        lambda d: _named(d["roads"], "autobahn", "slug").update(difficulty=float("nan")),
    )
    return ["roads.json", "roads[autobahn].difficulty", "finite"]


def _duplicate_name(config_dir: Path, edit) -> list[str]:
    edit("gears.json", lambda d: d["gears"].append(dict(_named(d["gears"], "claude-haiku"))))
    count = len(_config(config_dir, "gears.json")["gears"])
    return ["gears.json", f"gears[{count - 1}].name", "duplicate name 'claude-haiku'"]


def _unknown_provider(config_dir: Path, edit) -> list[str]:
    edit("gears.json", lambda d: _named(d["gears"], "gemini-flash").update(provider="mistral"))
    return ["gears.json", "gears[gemini-flash].provider", "unknown provider 'mistral'"]


def _unknown_gear(config_dir: Path, edit) -> list[str]:
    edit("roads.json", lambda d: _named(d["roads"], "konvoi", "slug").update(default_gear="gpt-9"))
    return ["roads.json", "roads[konvoi].default_gear", "unknown gear 'gpt-9'"]


def _tier_seven(config_dir: Path, edit) -> list[str]:
    edit("gears.json", lambda d: _named(d["gears"], "claude-haiku").update(tier=7))
    return ["gears.json", "gears[claude-haiku]", "tier", "less than or equal to 5"]


def _two_fallback_roads(config_dir: Path, edit) -> list[str]:
    edit("roads.json", lambda d: _named(d["roads"], "feldweg", "slug").update(fallback=True))
    return ["roads.json", "roads", 'exactly one road must have "fallback": true (found 2)']


def _negative_price(config_dir: Path, edit) -> list[str]:
    edit(
        "gears.json",
        lambda d: _named(d["gears"], "claude-opus")["prices_usd_per_mtok"].update(input="-1.00"),
    )
    return ["gears.json", "gears[claude-opus]", "input_price", "greater than or equal to 0"]


def _weights_not_adding_up(config_dir: Path, edit) -> list[str]:
    edit("fitness_criteria.json", lambda d: d["fitness_criteria"]["weights"].update(speed=0.5))
    return ["fitness_criteria.json", "fitness_criteria", "must add up to 1"]


def _missing_file(config_dir: Path, edit) -> list[str]:
    (config_dir / "budget.json").unlink()
    return ["budget.json", "(file)", "not found"]


BROKEN = [
    _invalid_json,
    _missing_key,
    _wrong_type,
    _date_not_a_string,
    _not_a_finite_number,
    _duplicate_name,
    _unknown_provider,
    _unknown_gear,
    _tier_seven,
    _two_fallback_roads,
    _negative_price,
    _weights_not_adding_up,
    _missing_file,
]


@pytest.mark.parametrize("already_imported", [False, True], ids=["fresh", "reimport"])
@pytest.mark.parametrize("breaks", BROKEN, ids=lambda case: case.__name__.strip("_"))
def test_broken_config_raises_config_error_and_leaves_the_database_as_it_was(
    breaks, already_imported, config_dir, edit_config, db_snapshot
):
    if already_imported:
        import_defaults(config_dir)
    expected = breaks(config_dir, edit_config)
    before = db_snapshot()

    with pytest.raises(ConfigError) as caught:
        import_defaults(config_dir)

    for words in expected:
        assert words in str(caught.value)
    assert db_snapshot() == before


def test_broken_roads_file_writes_no_provider_or_gear(db, config_dir):
    _invalid_json(config_dir, edit=None)

    with pytest.raises(ConfigError, match=r"^roads\.json: "):
        import_defaults(config_dir)

    assert [m.objects.count() for m in (*GARAGE_MODELS, ImportedDefault)] == [0] * 6


def test_failed_reimport_applies_none_of_the_earlier_file_changes(
    db, settings, config_dir, edit_config, db_snapshot
):
    import_defaults(config_dir)
    Gear.objects.filter(name="claude-opus").update(label="Opus, edited")
    # Changes that on their own would update untouched rows ...
    edit_config("providers.json", lambda d: _named(d["providers"], "anthropic").update(label="A2"))
    edit_config(
        "gears.json",
        lambda d: _named(d["gears"], "claude-haiku")["prices_usd_per_mtok"].update(output="0.70"),
    )
    edit_config("roads.json", lambda d: _named(d["roads"], "rallye", "slug").update(throttle=0.2))
    # ... and the last file fails only when its row is validated, after the others were written.
    _weights_not_adding_up(config_dir, edit_config)
    before = db_snapshot()

    with pytest.raises(ConfigError, match=r"^fitness_criteria\.json: "):
        import_defaults(config_dir)

    assert db_snapshot() == before
    assert Provider.objects.get(name="anthropic").label == "Anthropic"
    assert Gear.objects.get(name="claude-haiku").output_price == _price(
        settings.CLUTCH_CONFIG_DIR, "claude-haiku", "output"
    )
    assert Gear.objects.get(name="claude-opus").label == "Opus, edited"
    assert Road.objects.get(slug="rallye").throttle == 0.3


def test_failed_reset_keeps_admin_edits(db, config_dir, edit_config, db_snapshot):
    import_defaults(config_dir)
    Road.objects.filter(slug="feldweg").update(throttle=0.9)
    _tier_seven(config_dir, edit_config)
    before = db_snapshot()

    with pytest.raises(ConfigError):
        import_defaults(config_dir, reset=True)

    assert db_snapshot() == before
    assert Road.objects.get(slug="feldweg").throttle == 0.9
