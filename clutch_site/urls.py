from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from clutch_site import views
from clutch_site.api import api

admin.site.site_header = "clutch admin"
admin.site.site_title = "clutch admin"
admin.site.index_title = "Gears, roads, budget and the trip log"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
]
