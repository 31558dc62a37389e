from django.contrib import admin, messages

from clutch_site.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "name", "user", "created_at", "last_used_at", "expires_at", "revoked")
    list_filter = ("revoked",)
    list_editable = ("revoked",)
    search_fields = ("name", "user__username", "prefix")
    fields = ("user", "name", "expires_at", "revoked", "prefix", "created_at", "last_used_at")
    readonly_fields = ("prefix", "created_at", "last_used_at")
    autocomplete_fields = ("user",)

    def save_model(self, request, obj: ApiToken, form, change: bool) -> None:
        if not change:
            raw = obj.issue_secret()
            super().save_model(request, obj, form, change)
            messages.warning(
                request,
                f"New API token for {obj.user}: {raw} — copy it now, it is not shown again.",
            )
            return
        super().save_model(request, obj, form, change)
