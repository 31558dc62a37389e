import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clutch_site.settings")

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry loaded)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path  # noqa: E402

from fahrtenbuch.consumers import CockpitConsumer, TripConsumer  # noqa: E402

websocket_urlpatterns = [
    path("ws/cockpit/", CockpitConsumer.as_asgi()),
    path("ws/trips/<int:trip_id>/", TripConsumer.as_asgi()),
]

application = ProtocolTypeRouter(
    {
        # Daphne serves the vendored front-end files itself: the cockpit needs no CDN and no
        # separate web server.
        "http": ASGIStaticFilesHandler(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
