"""The trip log: trips, their legs and events, the spend ledger and the learning state."""

from decimal import Decimal

from django.conf import settings
from django.db import models

from garage.models import Gear, Pattern, Road

ZERO = Decimal("0")


def money(**kwargs) -> models.DecimalField:
    """USD amounts: a single call can cost a hundredth of a cent, so eight decimal places."""
    return models.DecimalField(max_digits=16, decimal_places=8, default=ZERO, **kwargs)


class TripStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REFUSED = "refused"


FINISHED_STATUSES = frozenset(
    {TripStatus.SUCCEEDED, TripStatus.FAILED, TripStatus.CANCELLED, TripStatus.REFUSED}
)


class Tempo(models.TextChoices):
    URGENT = "urgent"
    NORMAL = "normal"
    THOROUGH = "thorough"


class Trip(models.Model):
    """One submitted task and everything that happened to it (a Fahrt)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="trips",
    )
    task = models.TextField()
    options = models.JSONField(default=dict, blank=True)
    # NULL, not "", means "no key", so the unique constraint ignores trips without one.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001

    road = models.CharField(max_length=40, blank=True)
    analysis = models.JSONField(default=dict, blank=True)
    gear = models.ForeignKey(
        Gear, null=True, blank=True, on_delete=models.SET_NULL, related_name="trips"
    )
    gear_name = models.CharField(
        max_length=60, blank=True, help_text="As chosen, kept if the gear is deleted."
    )
    throttle = models.FloatField(null=True, blank=True)
    pattern = models.CharField(max_length=10, choices=Pattern.choices, blank=True)
    tempo = models.CharField(max_length=10, choices=Tempo.choices, default=Tempo.NORMAL)
    zone = models.CharField(max_length=10, blank=True)
    reasons = models.JSONField(default=list, blank=True)
    explored = models.BooleanField(default=False)
    simulated = models.BooleanField(default=False)

    status = models.CharField(max_length=10, choices=TripStatus.choices, default=TripStatus.QUEUED)
    output = models.TextField(blank=True)
    error = models.TextField(blank=True)
    error_kind = models.CharField(max_length=30, blank=True)

    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    thinking_tokens = models.PositiveIntegerField(default=0)
    estimated_cost_usd = money()
    cost_usd = money()
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField("time to first token (ms)", null=True, blank=True)
    retries = models.PositiveSmallIntegerField(default=0)
    failovers = models.PositiveSmallIntegerField(default=0)
    anomalies = models.JSONField(
        default=list, blank=True, help_text="Flags such as token explosion or a latency outlier."
    )

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life from the worker driving it."
    )
    resumed = models.PositiveSmallIntegerField(
        default=0, help_text="How often recovery restarted it after its worker died."
    )

    feedback = models.SmallIntegerField(
        null=True, blank=True, choices=[(1, "thumbs up"), (-1, "thumbs down")]
    )
    feedback_note = models.TextField(blank=True)
    feedback_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # History of one member, newest first, keyset-paginated:
            # WHERE user_id = ? [AND id < ?] ORDER BY id DESC LIMIT n
            models.Index(fields=["user", "-id"], name="trip_user_id_desc"),
            # Running trips on the cockpit and recovery of stuck trips:
            # WHERE status = 'running' [AND heartbeat_at < ?] ORDER BY id DESC
            models.Index(fields=["status", "-id"], name="trip_status_id_desc"),
            # One member's running trips on the cockpit and their history by status:
            # WHERE user_id = ? AND status = ? ORDER BY id DESC LIMIT n (with only the user's
            # index SQLite walks all of a busy member's trips to find the few running ones)
            models.Index(fields=["user", "status", "-id"], name="trip_user_status_id_desc"),
            # History filtered by road: WHERE road = ? ORDER BY id DESC LIMIT n
            models.Index(fields=["road", "-id"], name="trip_road_id_desc"),
            # History filtered by gear: WHERE gear_id = ? ORDER BY id DESC LIMIT n
            models.Index(fields=["gear", "-id"], name="trip_gear_id_desc"),
            # Date-range filters and the Fahrschule's sliding window:
            # WHERE created_at >= ? AND created_at < ?
            models.Index(fields=["created_at"], name="trip_created_at"),
        ]
        constraints = [
            # The same idempotency key from the same person gives the same trip.
            models.UniqueConstraint(
                fields=["user", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="trip_idempotency_key_per_user",
            ),
            models.CheckConstraint(
                condition=models.Q(throttle__isnull=True)
                | (models.Q(throttle__gte=0) & models.Q(throttle__lte=1)),
                name="trip_throttle_0_1",
            ),
        ]

    def __str__(self) -> str:
        return f"Trip {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.thinking_tokens


class LegRole(models.TextChoices):
    SINGLE = "single"
    STEP = "step"
    MEMBER = "member"
    ITEM = "item"
    MERGE = "merge"
    AGGREGATE = "aggregate"


class LegStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Leg(models.Model):
    """One model call inside a trip (an Etappe), with every attempt it took."""

    trip = models.ForeignKey(Trip, on_delete=models.CASCADE, related_name="legs")
    position = models.PositiveIntegerField()
    phase = models.PositiveSmallIntegerField(default=0, help_text="Hybrid phase, 0 otherwise.")
    role = models.CharField(max_length=10, choices=LegRole.choices, default=LegRole.SINGLE)
    title = models.CharField(max_length=200, blank=True)
    gear = models.ForeignKey(
        Gear, null=True, blank=True, on_delete=models.SET_NULL, related_name="legs"
    )
    gear_name = models.CharField(max_length=60, blank=True)
    throttle = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=LegStatus.choices, default=LegStatus.PENDING)
    prompt = models.TextField(blank=True)
    output = models.TextField(blank=True)
    error = models.TextField(blank=True)
    error_kind = models.CharField(max_length=30, blank=True)
    attempts = models.JSONField(
        default=list,
        blank=True,
        help_text="One entry per attempt: gear, outcome, error kind and message, latency.",
    )
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    thinking_tokens = models.PositiveIntegerField(default=0)
    cost_usd = money()
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    simulated = models.BooleanField(default=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["trip", "position"]
        constraints = [
            # Also the index for "legs of a trip in order": WHERE trip_id = ? ORDER BY position
            models.UniqueConstraint(fields=["trip", "position"], name="leg_position_per_trip"),
        ]

    def __str__(self) -> str:
        return f"Leg {self.position} of trip {self.trip_id}"


class TripEvent(models.Model):
    """Append-only timeline of a trip; its increasing id is also the cursor of the live feed."""

    trip = models.ForeignKey(Trip, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=30)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            # A trip's timeline and the replay for a page that (re)connects:
            # WHERE trip_id = ? AND id > ? ORDER BY id
            models.Index(fields=["trip", "id"], name="tripevent_trip_id"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} on trip {self.trip_id}"


class SpendState(models.TextChoices):
    HELD = "held", "reserved, call under way"
    SETTLED = "settled", "settled with the real usage"
    RELEASED = "released", "released, nothing was spent"


class SpendEntry(models.Model):
    """One reservation in the spend ledger: held before a call, settled or released after it."""

    trip = models.ForeignKey(
        Trip, null=True, blank=True, on_delete=models.SET_NULL, related_name="spend"
    )
    leg = models.ForeignKey(
        Leg, null=True, blank=True, on_delete=models.SET_NULL, related_name="spend"
    )
    gear = models.ForeignKey(
        Gear, null=True, blank=True, on_delete=models.SET_NULL, related_name="spend"
    )
    local_day = models.DateField(help_text="Calendar day in the budget's time zone.")
    state = models.CharField(max_length=10, choices=SpendState.choices, default=SpendState.HELD)
    reserved_usd = money()
    actual_usd = money(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "spend entries"
        indexes = [
            # Reservations left held by a dead worker: WHERE state = 'held' AND created_at < ?
            models.Index(fields=["state", "created_at"], name="spend_state_created"),
        ]

    def __str__(self) -> str:
        return f"{self.state} {self.reserved_usd} USD on {self.local_day}"


class SpendDay(models.Model):
    """Running total per calendar day: held reservations plus settled amounts.

    Updated in the same transaction as the ledger, so the Tankuhr reads at most 31 rows
    for the month instead of summing the whole ledger.
    """

    day = models.DateField(unique=True)
    committed_usd = money()
    settled_usd = money()

    def __str__(self) -> str:
        return f"{self.day}: {self.committed_usd} USD"


class RoutingPolicy(models.Model):
    """What the Fahrschule learned for a road: gear, throttle and pattern, and on how much data."""

    road = models.OneToOneField(Road, on_delete=models.CASCADE, related_name="policy")
    gear = models.ForeignKey(Gear, on_delete=models.CASCADE, related_name="policies")
    throttle = models.FloatField()
    pattern = models.CharField(max_length=10, choices=Pattern.choices)
    samples = models.PositiveIntegerField(default=0)
    fitness = models.FloatField(default=0.0)
    training_run = models.ForeignKey(
        "TrainingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="policies"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "routing policies"

    def __str__(self) -> str:
        return f"{self.road.slug} → {self.gear.name} @ {self.throttle:.2f}"


class TrainingRun(models.Model):
    """One run of the Fahrschule: what it looked at, what it changed, and ε before and after."""

    created_at = models.DateTimeField(auto_now_add=True)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    trips_considered = models.PositiveIntegerField(default=0)
    policies_changed = models.PositiveIntegerField(default=0)
    epsilon_before = models.FloatField()
    epsilon_after = models.FloatField()
    report = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Training run {self.pk} (ε {self.epsilon_after:.3f})"


class BreakerState(models.TextChoices):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open", "half-open"


class CircuitBreaker(models.Model):
    """Health of one gear, shared by every worker process through the database."""

    gear = models.OneToOneField(Gear, on_delete=models.CASCADE, related_name="breaker")
    state = models.CharField(
        max_length=10, choices=BreakerState.choices, default=BreakerState.CLOSED
    )
    consecutive_failures = models.PositiveIntegerField(default=0)
    recent_failures = models.JSONField(
        default=list,
        blank=True,
        help_text="Timestamps (epoch seconds) of failures in the last hour.",
    )
    opened_at = models.DateTimeField(null=True, blank=True)
    open_until = models.DateTimeField(null=True, blank=True)
    probe_started_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Breaker {self.gear.name}: {self.state}"


class TachoMinute(models.Model):
    """Per-minute rollup of finished trips, updated when a trip settles, so the cockpit
    reads a few rows instead of scanning the trip log."""

    minute = models.DateTimeField(unique=True)
    trips = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    thinking_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = money()
    latency_ms_sum = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-minute"]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M}: {self.trips} trips"
