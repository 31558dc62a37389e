"""Import the default tables from ``config/*.json`` into the database.

The files are read and checked completely before anything is written; the writes happen in
one transaction. A second import creates what is missing and updates rows an admin has not
touched, but never overwrites an admin's edit or brings back a row an admin deleted, unless
``reset=True``.
"""

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction

from garage.models import (
    Budget,
    FitnessCriteria,
    Gear,
    ImportedDefault,
    Pattern,
    Provider,
    ProviderKind,
    ReasoningMode,
    Road,
)


class ConfigError(Exception):
    """A default table that cannot be imported; the message names the file and the key."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file, self.key, self.problem = file, key, problem
        super().__init__(f"{file}: {key}: {problem}")


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    kept: int = 0

    def __str__(self) -> str:
        return f"{self.created} created, {self.updated} updated, {self.kept} kept as edited"


# --- reading the files -------------------------------------------------------------------


class _Reader:
    """Checks one JSON file and converts its values, naming the key on every error."""

    def __init__(self, directory: Path, filename: str) -> None:
        self.file = filename
        path = directory / filename
        try:
            self.data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(filename, "(file)", f"not found in {directory}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(
                filename, f"line {exc.lineno} column {exc.colno}", f"not valid JSON: {exc.msg}"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(filename, "(file)", "not UTF-8 text") from None
        if not isinstance(self.data, dict):
            raise ConfigError(filename, "(top level)", "must be a JSON object")

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.file, key, problem)

    def section(self, name: str, kind: type) -> Any:
        if name not in self.data:
            raise self.fail(name, "missing")
        value = self.data[name]
        if not isinstance(value, kind):
            raise self.fail(name, f"must be a JSON {'list' if kind is list else 'object'}")
        return value

    def entries(self, name: str, id_field: str) -> list[tuple[str, dict]]:
        """The list under ``name`` as (key path, entry) pairs; ids must be unique."""
        seen: set[str] = set()
        result = []
        for i, entry in enumerate(self.section(name, list)):
            where = f"{name}[{i}]"
            if not isinstance(entry, dict):
                raise self.fail(where, "must be a JSON object")
            ident = entry.get(id_field)
            if not isinstance(ident, str) or not ident:
                raise self.fail(f"{where}.{id_field}", "missing or not a string")
            if ident in seen:
                raise self.fail(f"{where}.{id_field}", f"duplicate {id_field} {ident!r}")
            seen.add(ident)
            result.append((f"{name}[{ident}]", entry))
        return result

    def get(self, entry: dict, where: str, field: str, kind: str, *, default: Any = ...) -> Any:
        key = f"{where}.{field}"
        if field not in entry:
            if default is ...:
                raise self.fail(key, "missing")
            return default
        value = entry[field]
        if kind == "str":
            if not isinstance(value, str):
                raise self.fail(key, f"must be a string, got {json.dumps(value)}")
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise self.fail(key, f"must be true or false, got {json.dumps(value)}")
            return value
        if kind in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.fail(key, f"must be a number, got {json.dumps(value)}")
            if not math.isfinite(value):
                # json.loads accepts NaN and Infinity; NaN slips past every range validator.
                raise self.fail(key, f"must be a finite number, got {value}")
            if kind == "int" and value != int(value):
                raise self.fail(key, f"must be a whole number, got {value}")
            return int(value) if kind == "int" else float(value)
        if kind == "decimal":
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise self.fail(
                    key, f'must be a decimal string such as "3.00", got {json.dumps(value)}'
                )
            try:
                number = Decimal(str(value))
            except InvalidOperation:
                raise self.fail(key, f"not a decimal number: {value!r}") from None
            if not number.is_finite():
                raise self.fail(key, f"not a finite number: {value!r}")
            return number
        if kind == "date":
            if value is None:
                return None
            if isinstance(value, str):
                try:
                    return date.fromisoformat(value)
                except ValueError:
                    pass
            raise self.fail(key, f"must be a date like 2026-01-31, got {json.dumps(value)}")
        if kind == "strlist":
            if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
                raise self.fail(key, "must be a list of strings")
            return value
        raise AssertionError(kind)

    def choice(
        self, entry: dict, where: str, field: str, choices: type[models.TextChoices], **kw
    ) -> str:
        value = self.get(entry, where, field, "str", **kw)
        if value not in choices.values:
            allowed = ", ".join(choices.values)
            raise self.fail(f"{where}.{field}", f"{value!r} is not one of: {allowed}")
        return value


@dataclass
class _Row:
    """One row to write: its model, natural key, plain field values and foreign-key names."""

    model: type[models.Model]
    table: str
    key_field: str
    key: str
    values: dict[str, Any]
    file: str
    where: str
    foreign: dict[str, tuple[type[models.Model], str, str]] | None = (
        None  # field -> (model, key field, name)
    )


def _providers(directory: Path) -> list[_Row]:
    r = _Reader(directory, "providers.json")
    rows = []
    for where, e in r.entries("providers", "name"):
        rows.append(
            _Row(
                Provider,
                "provider",
                "name",
                e["name"],
                {
                    "kind": r.choice(e, where, "kind", ProviderKind),
                    "label": r.get(e, where, "label", "str"),
                    "base_url": r.get(e, where, "base_url", "str", default=""),
                    "base_url_env": r.get(e, where, "base_url_env", "str", default=""),
                    "api_key_env": r.get(e, where, "api_key_env", "strlist", default=[]),
                    "enabled": r.get(e, where, "enabled", "bool", default=True),
                    "connect_timeout_s": r.get(
                        e, where, "connect_timeout_s", "float", default=10.0
                    ),
                    "read_timeout_s": r.get(e, where, "read_timeout_s", "float", default=120.0),
                    "max_concurrency": r.get(e, where, "max_concurrency", "int", default=8),
                    "notes": r.get(e, where, "notes", "str", default=""),
                },
                r.file,
                where,
            )
        )
    return rows


def _gears(directory: Path, provider_names: set[str]) -> list[_Row]:
    r = _Reader(directory, "gears.json")
    rows = []
    for where, e in r.entries("gears", "name"):
        provider = r.get(e, where, "provider", "str")
        if provider not in provider_names:
            raise r.fail(
                f"{where}.provider", f"unknown provider {provider!r} (not in providers.json)"
            )
        prices = e.get("prices_usd_per_mtok", {})
        if not isinstance(prices, dict):
            raise r.fail(f"{where}.prices_usd_per_mtok", "must be a JSON object")
        pwhere = f"{where}.prices_usd_per_mtok"
        zero = Decimal("0")
        rows.append(
            _Row(
                Gear,
                "gear",
                "name",
                e["name"],
                {
                    "label": r.get(e, where, "label", "str"),
                    "model_id": r.get(e, where, "model_id", "str"),
                    "tier": r.get(e, where, "tier", "int"),
                    "input_price": r.get(prices, pwhere, "input", "decimal", default=zero),
                    "output_price": r.get(prices, pwhere, "output", "decimal", default=zero),
                    "cached_input_price": r.get(
                        prices, pwhere, "cached_input", "decimal", default=zero
                    ),
                    "thinking_price": r.get(prices, pwhere, "thinking", "decimal", default=zero),
                    "prices_as_of": r.get(e, where, "prices_as_of", "date", default=None),
                    "price_source": r.get(e, where, "price_source", "str", default=""),
                    "context_window": r.get(e, where, "context_window", "int"),
                    "max_output_tokens": r.get(e, where, "max_output_tokens", "int"),
                    "reasoning": r.choice(e, where, "reasoning", ReasoningMode, default="none"),
                    "strengths": r.get(e, where, "strengths", "strlist", default=[]),
                    "enabled": r.get(e, where, "enabled", "bool", default=True),
                },
                r.file,
                where,
                {"provider": (Provider, "name", provider)},
            )
        )
    return rows


def _roads(directory: Path, gear_names: set[str]) -> list[_Row]:
    r = _Reader(directory, "roads.json")
    rows = []
    fallbacks = []
    for where, e in r.entries("roads", "slug"):
        gear = r.get(e, where, "default_gear", "str")
        if gear not in gear_names:
            raise r.fail(f"{where}.default_gear", f"unknown gear {gear!r} (not in gears.json)")
        signals = e.get("signals", {})
        if not isinstance(signals, dict):
            raise r.fail(f"{where}.signals", 'must be an object like {"en": [...], "de": [...]}')
        fallback = r.get(e, where, "fallback", "bool", default=False)
        if fallback:
            fallbacks.append(e["slug"])
        rows.append(
            _Row(
                Road,
                "road",
                "slug",
                e["slug"],
                {
                    "label": r.get(e, where, "label", "str"),
                    "category": r.get(e, where, "category", "str"),
                    "description": r.get(e, where, "description", "str", default=""),
                    "difficulty": r.get(e, where, "difficulty", "float"),
                    "throttle": r.get(e, where, "throttle", "float"),
                    "pattern": r.choice(e, where, "pattern", Pattern),
                    "signals_en": r.get(signals, f"{where}.signals", "en", "strlist", default=[]),
                    "signals_de": r.get(signals, f"{where}.signals", "de", "strlist", default=[]),
                    "is_fallback": fallback,
                    "order": r.get(e, where, "order", "int", default=0),
                },
                r.file,
                where,
                {"default_gear": (Gear, "name", gear)},
            )
        )
    if len(fallbacks) != 1:
        raise r.fail(
            "roads", f'exactly one road must have "fallback": true (found {len(fallbacks)})'
        )
    # The fallback road is written last, so the old one is cleared before the new one is set
    # when the file moves the fallback (one_fallback_road allows one at a time).
    return sorted(rows, key=lambda row: row.values["is_fallback"])


def _budget(directory: Path) -> list[_Row]:
    r = _Reader(directory, "budget.json")
    e, where = r.section("budget", dict), "budget"
    zones = e.get("zones", {})
    if not isinstance(zones, dict):
        raise r.fail("budget.zones", "must be a JSON object")
    values = {
        "daily_limit_usd": r.get(e, where, "daily_limit_usd", "decimal"),
        "monthly_limit_usd": r.get(e, where, "monthly_limit_usd", "decimal"),
        "timezone": r.get(e, where, "timezone", "str", default="UTC"),
    }
    for zone, default_from, default_tier in (
        ("green", None, 5),
        ("yellow", "0.30", 3),
        ("orange", "0.60", 2),
        ("red", "0.80", 0),
    ):
        z = zones.get(zone, {})
        zwhere = f"budget.zones.{zone}"
        if not isinstance(z, dict):
            raise r.fail(zwhere, "must be a JSON object")
        if default_from is not None:
            values[f"{zone}_from"] = r.get(
                z, zwhere, "from", "decimal", default=Decimal(default_from)
            )
        values[f"{zone}_max_tier"] = r.get(z, zwhere, "max_tier", "int", default=default_tier)
    return [_Row(Budget, "budget", "name", "default", values, r.file, where)]


def _fitness(directory: Path) -> list[_Row]:
    r = _Reader(directory, "fitness_criteria.json")
    e, where = r.section("fitness_criteria", dict), "fitness_criteria"
    weights = e.get("weights", {})
    if not isinstance(weights, dict):
        raise r.fail("fitness_criteria.weights", "must be a JSON object")
    ww = "fitness_criteria.weights"
    values = {
        "weight_efficiency": r.get(weights, ww, "efficiency", "float"),
        "weight_quality": r.get(weights, ww, "quality", "float"),
        "weight_speed": r.get(weights, ww, "speed", "float"),
        "weight_reliability": r.get(weights, ww, "reliability", "float"),
        "window_days": r.get(e, where, "window_days", "int", default=30),
        "daily_decay": r.get(e, where, "daily_decay", "float", default=0.95),
        "min_samples": r.get(e, where, "min_samples", "int", default=20),
        "switch_margin": r.get(e, where, "switch_margin", "float", default=0.05),
        "epsilon_start": r.get(e, where, "epsilon_start", "float", default=0.10),
        "epsilon_decay": r.get(e, where, "epsilon_decay", "float", default=0.995),
        "epsilon_floor": r.get(e, where, "epsilon_floor", "float", default=0.02),
        "reference_latency_ms": r.get(e, where, "reference_latency_ms", "int", default=10000),
        "reference_cost_usd": r.get(
            e, where, "reference_cost_usd", "decimal", default=Decimal("0.01")
        ),
    }
    return [_Row(FitnessCriteria, "fitness_criteria", "name", "default", values, r.file, where)]


def read_defaults(directory: Path) -> list[_Row]:
    """Read and check every default table; raises ConfigError before anything is written."""
    providers = _providers(directory)
    gears = _gears(directory, {row.key for row in providers})
    roads = _roads(directory, {row.key for row in gears})
    return [*providers, *gears, *roads, *_budget(directory), *_fitness(directory)]


# --- writing them ------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value else "0"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, models.Model):
        return getattr(value, "name", None) or getattr(value, "slug", None) or value.pk
    return value


def _fingerprint(values: dict[str, Any]) -> str:
    plain = {k: _plain(v) for k, v in sorted(values.items())}
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()


def _current_values(instance: models.Model, fields: list[str]) -> dict[str, Any]:
    return {f: getattr(instance, f) for f in fields}


def _resolve(row: _Row) -> dict[str, Any]:
    values = dict(row.values)
    for field, (model, key_field, name) in (row.foreign or {}).items():
        target = model.objects.filter(**{key_field: name}).first()
        if target is None:
            # Only reachable when an admin deleted a default the file still refers to.
            raise ConfigError(
                row.file, f"{row.where}.{field}", f"{name!r} does not exist in the database"
            )
        values[field] = target
    return values


def _save(instance: models.Model, row: _Row) -> None:
    try:
        instance.full_clean()
    except ValidationError as exc:
        problems = "; ".join(
            f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items()
        )
        raise ConfigError(row.file, row.where, problems) from None
    instance.save()


@transaction.atomic
def import_defaults(directory: Path, *, reset: bool = False) -> ImportReport:
    """Import the default tables; see the module docstring for what is kept."""
    rows = read_defaults(directory)
    report = ImportReport()
    for row in rows:
        # Foreign keys by name: a row that is kept may name a row an admin has deleted, so
        # they are only looked up (_resolve) when this row is written.
        named = {**row.values, **{f: name for f, (_, _, name) in (row.foreign or {}).items()}}
        fingerprint = _fingerprint(named)
        fields = list(named)
        instance = row.model.objects.filter(**{row.key_field: row.key}).first()
        record = ImportedDefault.objects.filter(table=row.table, key=row.key).first()
        if instance is None:
            if record is not None and not reset:
                report.kept += 1  # an admin deleted this default on purpose
                continue
            instance = row.model(**{row.key_field: row.key}, **_resolve(row))
            _save(instance, row)
            report.created += 1
        else:
            current = _fingerprint(_current_values(instance, fields))
            untouched = record is not None and record.fingerprint == current
            if current == fingerprint:
                pass
            elif reset or untouched:
                for field, value in _resolve(row).items():
                    setattr(instance, field, value)
                _save(instance, row)
                report.updated += 1
            else:
                report.kept += 1
                continue
        ImportedDefault.objects.update_or_create(
            table=row.table, key=row.key, defaults={"fingerprint": fingerprint}
        )
    return report
