import os
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clutch_site.settings")

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry loaded)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path  # noqa: E402

from clutch_site.startup import warm_up  # noqa: E402
from fahrtenbuch.consumers import CockpitConsumer, TripConsumer  # noqa: E402

warm_up()


class LongLivedThreads:
    """Run each HTTP request's synchronous parts on one of a few long-lived threads.

    Django's ASGI handler gives every request a thread of its own, and with the thread a new
    database connection: CONN_MAX_AGE never helps, and on SQLite every request paid for
    opening a connection and its pragmas (about 10 ms of a 13 ms API call). Here a request is
    bound, for its whole life, to the least busy of a few single-thread executors; the threads
    and their connections stay. Requests on one thread take turns only for their synchronous
    parts (an async view waiting for a trip holds no thread).
    """

    def __init__(self, app, threads: int) -> None:
        self.app = app
        self.executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"web-{i}") for i in range(threads)
        ]
        self.busy = [0] * threads

    async def __call__(self, scope, receive, send) -> None:
        slot = min(range(len(self.busy)), key=self.busy.__getitem__)
        self.busy[slot] += 1
        try:
            async with ThreadSensitiveContext(executor=self.executors[slot]):
                await self.app(scope, receive, send)
        finally:
            self.busy[slot] -= 1


websocket_urlpatterns = [
    path("ws/cockpit/", CockpitConsumer.as_asgi()),
    path("ws/trips/<int:trip_id>/", TripConsumer.as_asgi()),
]

application = ProtocolTypeRouter(
    {
        # Daphne serves the vendored front-end files itself: the cockpit needs no CDN and no
        # separate web server.
        "http": LongLivedThreads(
            ASGIStaticFilesHandler(django_asgi_app),
            threads=int(os.environ.get("CLUTCH_WEB_THREADS", "8")),
        ),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
