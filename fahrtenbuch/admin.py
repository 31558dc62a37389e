from django.contrib import admin

from fahrtenbuch.models import (
    CircuitBreaker,
    Leg,
    RoutingPolicy,
    SpendDay,
    SpendEntry,
    TrainingRun,
    Trip,
    TripEvent,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """The trip log is written by clutch; admins read it, and may delete."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class LegInline(admin.TabularInline):
    model = Leg
    extra = 0
    can_delete = False
    fields = (
        "position",
        "role",
        "gear_name",
        "status",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "latency_ms",
        "error_kind",
    )
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Trip)
class TripAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "user",
        "road",
        "gear_name",
        "throttle",
        "pattern",
        "status",
        "cost_usd",
        "latency_ms",
        "simulated",
    )
    list_filter = ("status", "road", "pattern", "simulated", "explored")
    search_fields = ("task",)
    list_select_related = ("user",)
    show_full_result_count = False  # counting a million rows on every page is what makes logs slow
    date_hierarchy = None
    inlines = [LegInline]


@admin.register(Leg)
class LegAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "trip",
        "position",
        "role",
        "gear_name",
        "status",
        "cost_usd",
        "latency_ms",
    )
    list_filter = ("status", "role")
    raw_id_fields = ("trip",)
    show_full_result_count = False


@admin.register(TripEvent)
class TripEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "trip", "kind", "created_at")
    list_filter = ("kind",)
    raw_id_fields = ("trip",)
    show_full_result_count = False


@admin.register(SpendEntry)
class SpendEntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "local_day", "state", "reserved_usd", "actual_usd", "gear", "trip")
    list_filter = ("state",)
    raw_id_fields = ("trip", "leg")
    show_full_result_count = False


@admin.register(SpendDay)
class SpendDayAdmin(ReadOnlyAdmin):
    list_display = ("day", "committed_usd", "settled_usd")


@admin.register(RoutingPolicy)
class RoutingPolicyAdmin(admin.ModelAdmin):
    list_display = ("road", "gear", "throttle", "pattern", "samples", "fitness", "updated_at")


@admin.register(TrainingRun)
class TrainingRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "triggered_by",
        "trips_considered",
        "policies_changed",
        "epsilon_before",
        "epsilon_after",
    )


@admin.register(CircuitBreaker)
class CircuitBreakerAdmin(admin.ModelAdmin):
    list_display = ("gear", "state", "consecutive_failures", "open_until", "updated_at")
    list_filter = ("state",)
