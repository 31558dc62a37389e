from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from clutch_site import views
from clutch_site.api import api
from fahrtenbuch import views as trips
from garage import views as garage

admin.site.site_header = "clutch admin"
admin.site.site_title = "clutch admin"
admin.site.index_title = "Gears, roads, budget and the trip log"

urlpatterns = [
    path("", views.home, name="home"),
    path("trips/", trips.history, name="history"),
    path("trips/export.csv", trips.history_csv, name="history-csv"),
    path("trips/new/", trips.trip_new, name="trip-new"),
    path("trips/preview/", trips.trip_preview, name="trip-preview"),
    path("trips/<int:trip_id>/", trips.trip_detail, name="trip-detail"),
    path("trips/<int:trip_id>/cancel/", trips.trip_cancel, name="trip-cancel"),
    path("trips/<int:trip_id>/again/", trips.trip_again, name="trip-again"),
    path("trips/<int:trip_id>/feedback/", trips.trip_feedback, name="trip-feedback"),
    path("fahrschule/", garage.fahrschule, name="fahrschule"),
    path("fahrschule/train/", garage.fahrschule_train, name="fahrschule-train"),
    # Served by Channels (clutch_site/asgi.py); named here so templates can link to them.
    path("ws/cockpit/", views.websocket_only, name="ws-cockpit"),
    path("ws/trips/<int:trip_id>/", views.websocket_only, name="ws-trip"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
]
