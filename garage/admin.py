from django.contrib import admin
from django.db import models
from django.utils.html import format_html

from garage.models import Budget, FitnessCriteria, Gear, Provider, Road


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "label",
        "kind",
        "enabled",
        "credentials",
        "base_url",
        "max_concurrency",
    )
    list_filter = ("kind", "enabled")
    list_editable = ("enabled",)
    readonly_fields = ("credentials",)
    fields = (
        "name",
        "label",
        "kind",
        "enabled",
        "base_url",
        "base_url_env",
        "api_key_env",
        "credentials",
        "connect_timeout_s",
        "read_timeout_s",
        "max_concurrency",
        "notes",
    )

    @admin.display(description="credentials")
    def credentials(self, provider: Provider) -> str:
        # Only ever the variable's name: the key itself is not read into a page.
        if not provider.needs_credentials:
            return "not needed"
        source = provider.credential_source
        if source:
            return format_html('<span style="color:#15803d">present in {}</span>', source)
        return format_html(
            '<span style="color:#b91c1c">missing: set {}</span>', " or ".join(provider.api_key_env)
        )


@admin.register(Gear)
class GearAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "provider",
        "model_id",
        "tier",
        "input_price",
        "output_price",
        "cached_input_price",
        "thinking_price",
        "prices_as_of",
        "reasoning",
        "enabled",
    )
    list_editable = (
        "tier",
        "input_price",
        "output_price",
        "cached_input_price",
        "thinking_price",
        "enabled",
    )
    list_filter = ("tier", "provider", "enabled", "reasoning")
    search_fields = ("name", "label", "model_id")
    list_select_related = ("provider",)
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


@admin.register(Road)
class RoadAdmin(admin.ModelAdmin):
    list_display = (
        "order",
        "slug",
        "label",
        "category",
        "difficulty",
        "default_gear",
        "throttle",
        "pattern",
        "is_fallback",
    )
    list_display_links = ("slug",)
    list_editable = ("default_gear", "throttle", "pattern")
    list_select_related = ("default_gear",)
    ordering = ("order",)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "default_gear":
            kwargs["queryset"] = Gear.objects.filter(enabled=True).select_related("provider")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class SingletonAdmin(admin.ModelAdmin):
    """One row: editable, but not added twice or deleted."""

    def has_add_permission(self, request) -> bool:
        return not self.model.objects.exists() and super().has_add_permission(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Budget)
class BudgetAdmin(SingletonAdmin):
    list_display = (
        "name",
        "daily_limit_usd",
        "monthly_limit_usd",
        "yellow_from",
        "orange_from",
        "red_from",
        "timezone",
    )
    fieldsets = (
        (None, {"fields": ("name", "daily_limit_usd", "monthly_limit_usd", "timezone")}),
        (
            "Zones: usage share where each starts",
            {"fields": ("yellow_from", "orange_from", "red_from")},
        ),
        (
            "Highest tier allowed per zone",
            {"fields": ("green_max_tier", "yellow_max_tier", "orange_max_tier", "red_max_tier")},
        ),
    )


@admin.register(FitnessCriteria)
class FitnessCriteriaAdmin(SingletonAdmin):
    list_display = (
        "name",
        "weight_efficiency",
        "weight_quality",
        "weight_speed",
        "weight_reliability",
        "min_samples",
        "epsilon_start",
    )
    fieldsets = (
        (
            "Weights (must add up to 1)",
            {
                "fields": (
                    "weight_efficiency",
                    "weight_quality",
                    "weight_speed",
                    "weight_reliability",
                )
            },
        ),
        ("Window", {"fields": ("window_days", "daily_decay", "min_samples", "switch_margin")}),
        ("Exploration", {"fields": ("epsilon_start", "epsilon_decay", "epsilon_floor")}),
        ("Scales", {"fields": ("reference_latency_ms", "reference_cost_usd")}),
    )
