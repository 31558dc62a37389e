"""The car: providers, gears, roads, the budget and the fitness criteria.

These tables are imported once from ``config/`` and from then on edited in the admin.
"""

import hashlib
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from garage import credentials

ZERO = Decimal("0")
slug_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9_.-]*$", "Use lowercase letters, digits, '-', '_' or '.' only."
)
unit_interval = [MinValueValidator(0.0), MaxValueValidator(1.0)]
fraction_validators = [MinValueValidator(ZERO), MaxValueValidator(Decimal("1"))]


class ProviderKind(models.TextChoices):
    ANTHROPIC = "anthropic", "Anthropic Messages API"
    GEMINI = "gemini", "Google Gemini API"
    OLLAMA = "ollama", "Ollama (local)"
    OPENAI = "openai", "OpenAI-compatible"
    CLAUDE_CODE = "claude_code", "Claude Code CLI"
    LLAMACPP = "llamacpp", "llama.cpp in-process"
    PRUEFSTAND = "pruefstand", "Prüfstand (simulated)"


class Provider(models.Model):
    """One place models are served from. The key itself is never stored, only where it lives."""

    name = models.CharField(max_length=40, unique=True, validators=[slug_validator])
    kind = models.CharField(max_length=20, choices=ProviderKind.choices)
    label = models.CharField(max_length=80)
    base_url = models.CharField(max_length=300, blank=True)
    base_url_env = models.CharField(
        max_length=80, blank=True, help_text="Environment variable that overrides the base URL."
    )
    api_key_env = models.JSONField(
        default=list,
        blank=True,
        help_text="Environment variables that may hold the API key, first match wins. "
        "Empty for providers that need no key.",
    )
    enabled = models.BooleanField(default=True)
    connect_timeout_s = models.FloatField(default=10.0, validators=[MinValueValidator(0.1)])
    read_timeout_s = models.FloatField(default=120.0, validators=[MinValueValidator(0.1)])
    max_concurrency = models.PositiveIntegerField(default=8, validators=[MinValueValidator(1)])
    notes = models.TextField(blank=True)
    # Result of the last reachability check (local servers are only routed to once seen up).
    probe_ok = models.BooleanField(null=True, blank=True, editable=False)
    probe_detail = models.CharField(max_length=300, blank=True, editable=False)
    probe_at = models.DateTimeField(null=True, blank=True, editable=False)
    misconfigured = models.CharField(
        max_length=300,
        blank=True,
        help_text="Set when the provider rejected the credentials (401/403); cleared on success.",
    )
    # Which key was rejected, as a short hash (never the key): a new key clears the verdict.
    misconfigured_key = models.CharField(max_length=16, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.label or self.name

    def clean(self) -> None:
        names = self.api_key_env
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise ValidationError(
                {"api_key_env": 'Give a list of variable names, e.g. ["ANTHROPIC_API_KEY"].'}
            )
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ValidationError({"base_url": "The base URL must start with http:// or https://."})

    @property
    def needs_credentials(self) -> bool:
        return bool(self.api_key_env)

    @property
    def credential_source(self) -> str | None:
        """Which variable currently holds the key (its name, never its value)."""
        return credentials.first_present(list(self.api_key_env))

    @property
    def key_fingerprint(self) -> str:
        """A short hash of the key in use now ('' without one), to recognise a rotated key."""
        source = self.credential_source
        value = credentials.lookup(source) if source else None
        return hashlib.sha256(value.encode()).hexdigest()[:16] if value else ""

    @property
    def rejected_key_in_use(self) -> bool:
        """The provider rejected the very key that is configured now."""
        return bool(self.misconfigured) and self.misconfigured_key == self.key_fingerprint

    @property
    def has_credentials(self) -> bool:
        return not self.needs_credentials or self.credential_source is not None


class ReasoningMode(models.TextChoices):
    NONE = "none", "none"
    BUDGET = "budget", "token budget"
    EFFORT = "effort", "effort level"
    THINK = "think", "think flag"


class Gear(models.Model):
    """One concrete model on one provider, tier 1 (cheapest) to 5 (strongest)."""

    name = models.CharField(max_length=60, unique=True, validators=[slug_validator])
    label = models.CharField(max_length=100)
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="gears")
    model_id = models.CharField(max_length=120)
    tier = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(5)])
    input_price = models.DecimalField(
        "input USD/Mtok",
        max_digits=10,
        decimal_places=4,
        default=ZERO,
        validators=[MinValueValidator(ZERO)],
    )
    output_price = models.DecimalField(
        "output USD/Mtok",
        max_digits=10,
        decimal_places=4,
        default=ZERO,
        validators=[MinValueValidator(ZERO)],
    )
    cached_input_price = models.DecimalField(
        "cached input USD/Mtok",
        max_digits=10,
        decimal_places=4,
        default=ZERO,
        validators=[MinValueValidator(ZERO)],
    )
    thinking_price = models.DecimalField(
        "thinking USD/Mtok",
        max_digits=10,
        decimal_places=4,
        default=ZERO,
        validators=[MinValueValidator(ZERO)],
    )
    prices_as_of = models.DateField(null=True, blank=True, help_text="When the prices were taken.")
    price_source = models.URLField(max_length=300, blank=True)
    context_window = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    max_output_tokens = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    reasoning = models.CharField(
        max_length=10,
        choices=ReasoningMode.choices,
        default=ReasoningMode.NONE,
        help_text="How this model takes a reasoning level.",
    )
    strengths = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["tier", "name"]

    def __str__(self) -> str:
        return f"{self.name} (G{self.tier})"

    def clean(self) -> None:
        if not isinstance(self.strengths, list) or not all(
            isinstance(s, str) for s in self.strengths
        ):
            raise ValidationError({"strengths": 'Give a list of words, e.g. ["code", "fast"].'})
        if self.pk is not None and not self.enabled:
            roads = sorted(self.roads.values_list("slug", flat=True))
            if roads:
                raise ValidationError(
                    {
                        "enabled": f"{self.name} is the default gear of {', '.join(roads)}; "
                        "give those roads another gear before disabling it."
                    }
                )

    @property
    def is_free(self) -> bool:
        return not any(
            (self.input_price, self.output_price, self.cached_input_price, self.thinking_price)
        )

    @property
    def is_simulated(self) -> bool:
        return self.provider.kind == ProviderKind.PRUEFSTAND


class Pattern(models.TextChoices):
    SINGLE = "single", "single (Einzelfahrt)"
    CONVOY = "convoy", "convoy (Kolonne)"
    TEAM = "team", "team"
    SWARM = "swarm", "swarm (Schwarm)"
    HYBRID = "hybrid", "hybrid"


class Road(models.Model):
    """A road type: what kind of task it is and how clutch drives it by default."""

    slug = models.SlugField(max_length=40, unique=True)
    label = models.CharField(max_length=80)
    category = models.CharField(max_length=40, help_text="trivial, standard, bugfix, …")
    description = models.TextField(blank=True)
    difficulty = models.FloatField(validators=unit_interval, help_text="Base difficulty 0–1.")
    default_gear = models.ForeignKey(Gear, on_delete=models.PROTECT, related_name="roads")
    throttle = models.FloatField(validators=unit_interval, help_text="Reasoning level 0–1.")
    pattern = models.CharField(max_length=10, choices=Pattern.choices, default=Pattern.SINGLE)
    signals_en = models.JSONField(
        default=list, blank=True, help_text="English words and phrases that point to this road."
    )
    signals_de = models.JSONField(
        default=list, blank=True, help_text="German words and phrases that point to this road."
    )
    is_fallback = models.BooleanField(
        default=False, help_text="Taken when no signal matches. Exactly one road should be."
    )
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["order", "slug"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_fallback"],
                condition=models.Q(is_fallback=True),
                name="one_fallback_road",
                violation_error_message="Only one road can be the fallback.",
            ),
        ]

    def __str__(self) -> str:
        return self.label

    def clean(self) -> None:
        errors = {}
        for field in ("signals_en", "signals_de"):
            value = getattr(self, field)
            if not isinstance(value, list) or not all(
                isinstance(s, str) and s.strip() for s in value
            ):
                errors[field] = 'Give a list of non-empty phrases, e.g. ["typo", "format"].'
        if self.default_gear_id is not None and not self.default_gear.enabled:
            errors["default_gear"] = (
                f"Gear {self.default_gear.name} is disabled; choose an enabled gear "
                "or enable it first."
            )
        if errors:
            raise ValidationError(errors)


class Budget(models.Model):
    """Daily and monthly limits and the four zones (Tankuhr). One row, named 'default'."""

    name = models.SlugField(max_length=40, unique=True, default="default")
    daily_limit_usd = models.DecimalField(
        max_digits=12, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))]
    )
    monthly_limit_usd = models.DecimalField(
        max_digits=12, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))]
    )
    yellow_from = models.DecimalField(
        max_digits=5,
        decimal_places=4,
        default=Decimal("0.30"),
        validators=fraction_validators,
        help_text="Usage share where yellow starts (inclusive).",
    )
    orange_from = models.DecimalField(
        max_digits=5, decimal_places=4, default=Decimal("0.60"), validators=fraction_validators
    )
    red_from = models.DecimalField(
        max_digits=5, decimal_places=4, default=Decimal("0.80"), validators=fraction_validators
    )
    green_max_tier = models.PositiveSmallIntegerField(
        default=5, validators=[MinValueValidator(0), MaxValueValidator(5)]
    )
    yellow_max_tier = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(0), MaxValueValidator(5)]
    )
    orange_max_tier = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(0), MaxValueValidator(5)]
    )
    red_max_tier = models.PositiveSmallIntegerField(
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(5)],
        help_text="0: in the red zone only zero-cost (local) gears may drive.",
    )
    timezone = models.CharField(
        max_length=64, default="UTC", help_text="Calendar day and month are counted here."
    )

    def __str__(self) -> str:
        return f"Budget {self.name}: {self.daily_limit_usd} USD/day, {self.monthly_limit_usd} USD/month"

    def clean(self) -> None:
        errors = {}
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            errors["timezone"] = (
                f"Unknown time zone {self.timezone!r}; use a name like Europe/Berlin."
            )
        if None not in (self.yellow_from, self.orange_from, self.red_from) and not (
            ZERO < self.yellow_from < self.orange_from < self.red_from <= 1
        ):
            errors["red_from"] = (
                "Zone thresholds must rise: 0 < yellow < orange < red ≤ 1 "
                f"(got {self.yellow_from}, {self.orange_from}, {self.red_from})."
            )
        caps = (self.green_max_tier, self.yellow_max_tier, self.orange_max_tier, self.red_max_tier)
        if None not in caps and list(caps) != sorted(caps, reverse=True):
            errors["red_max_tier"] = (
                "Tier caps may not grow as the tank empties: green ≥ yellow ≥ orange ≥ red."
            )
        if (
            self.daily_limit_usd is not None
            and self.monthly_limit_usd is not None
            and self.daily_limit_usd > self.monthly_limit_usd
        ):
            errors["daily_limit_usd"] = "The daily limit cannot exceed the monthly limit."
        if errors:
            raise ValidationError(errors)


class FitnessCriteria(models.Model):
    """How the Fahrschule scores a (road, gear) pair and how boldly it explores. One row."""

    name = models.SlugField(max_length=40, unique=True, default="default")
    weight_efficiency = models.FloatField(default=0.30, validators=unit_interval)
    weight_quality = models.FloatField(default=0.35, validators=unit_interval)
    weight_speed = models.FloatField(default=0.20, validators=unit_interval)
    weight_reliability = models.FloatField(default=0.15, validators=unit_interval)
    window_days = models.PositiveSmallIntegerField(
        default=30, validators=[MinValueValidator(1)], help_text="Sliding window of trips."
    )
    daily_decay = models.FloatField(
        default=0.95, validators=unit_interval, help_text="Weight of a trip one day older."
    )
    min_samples = models.PositiveIntegerField(
        default=20, help_text="Trips a (road, gear) pair needs before the policy trusts it."
    )
    switch_margin = models.FloatField(
        default=0.05,
        validators=unit_interval,
        help_text="Fitness lead a gear needs over the road's default to replace it.",
    )
    epsilon_start = models.FloatField(default=0.10, validators=unit_interval)
    epsilon_decay = models.FloatField(default=0.995, validators=unit_interval)
    epsilon_floor = models.FloatField(default=0.02, validators=unit_interval)
    reference_latency_ms = models.PositiveIntegerField(
        default=10000,
        validators=[MinValueValidator(1)],
        help_text="Latency that scores 0.5 on speed.",
    )
    reference_cost_usd = models.DecimalField(
        max_digits=10,
        decimal_places=6,
        default=Decimal("0.01"),
        validators=[MinValueValidator(Decimal("0.000001"))],
        help_text="Cost per trip that scores 0.5 on efficiency.",
    )

    class Meta:
        verbose_name_plural = "fitness criteria"

    def __str__(self) -> str:
        return f"Fitness criteria {self.name}"

    def clean(self) -> None:
        weights = (
            self.weight_efficiency,
            self.weight_quality,
            self.weight_speed,
            self.weight_reliability,
        )
        if None not in weights and abs(sum(weights) - 1.0) > 1e-6:
            raise ValidationError(
                f"The four weights must add up to 1 (they add up to {sum(weights):.3f})."
            )
        if (
            self.epsilon_floor is not None
            and self.epsilon_start is not None
            and self.epsilon_floor > self.epsilon_start
        ):
            raise ValidationError({"epsilon_floor": "The ε floor cannot exceed the start value."})


class ImportedDefault(models.Model):
    """What the default import last wrote to a row, so a re-import can tell an admin's edit
    (keep it) from an untouched default (update it to the new file)."""

    table = models.CharField(max_length=40)
    key = models.CharField(max_length=80)
    fingerprint = models.CharField(max_length=64)
    imported_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # Looked up per row during an import: WHERE table = ? AND key = ?
            models.UniqueConstraint(fields=["table", "key"], name="imported_default_per_row"),
        ]

    def __str__(self) -> str:
        return f"{self.table}:{self.key}"
