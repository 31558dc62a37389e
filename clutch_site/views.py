"""The cockpit home page, and how every page turns a business error into a clear message."""

from collections.abc import Callable
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from fahrtenbuch.selectors import running_trips
from fahrtenbuch.services import ApplicationError
from garage.selectors import fuel_gauge, gearbox_status, road_routes, tacho_overview


def problem(request: HttpRequest, error: ApplicationError) -> HttpResponse:
    """An ApplicationError as a page (or, for htmx, as a message swapped into #flash)."""
    if request.htmx:
        response = render(
            request,
            "clutch_site/problem.html#problem-message",
            {"error": error},
            status=error.status,
        )
        response["HX-Retarget"] = "#flash"
        response["HX-Reswap"] = "innerHTML"
        return response
    return render(request, "clutch_site/problem.html", {"error": error}, status=error.status)


def application_errors(*, back: Callable[[HttpRequest, dict], str] | None = None):
    """Business errors become a clear message, never a 500. With ``back`` a form POST that
    fails goes back to the page it came from with the message on top."""

    def decorate(view):
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            try:
                return view(request, *args, **kwargs)
            except ApplicationError as error:
                if back is not None and request.method == "POST" and not request.htmx:
                    if error.status in (403, 404):
                        return problem(request, error)
                    messages.error(request, error.message)
                    return redirect(back(request, kwargs), permanent=False)
                return problem(request, error)

        return wrapper

    return decorate


def cockpit_global() -> dict:
    """The figures every viewer of the cockpit sees alike."""
    return {"fuel": fuel_gauge(), "tacho": tacho_overview(), "gears": gearbox_status()}


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "clutch_site/home.html",
        {
            **cockpit_global(),
            "running": running_trips(request.user),
            "routes": road_routes(),
            "nav": "cockpit",
        },
    )


def websocket_only(request: HttpRequest, **kwargs) -> HttpResponse:
    """The live feeds speak WebSocket only; a plain HTTP request gets told so."""
    return HttpResponse(
        "This address is a WebSocket (the page's live feed).", status=426, content_type="text/plain"
    )
