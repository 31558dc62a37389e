"""Trip pages: new trip with a live route preview, the trip itself, and the history."""

import csv
import io
import random
from collections import defaultdict

from asgiref.sync import sync_to_async
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_GET, require_POST

from clutch_site.views import application_errors
from fahrtenbuch import selectors, services
from fahrtenbuch.models import FINISHED_STATUSES, LegStatus, Tempo, Trip, TripEvent, TripStatus
from garage.engine.kupplung import PATTERNS
from garage.fahrer import Fahrer
from garage.models import Gear, Road

LIST_KEY = {"convoy": "steps", "team": "members", "hybrid": "members", "swarm": "items"}


class _NoExploration(random.Random):
    """The preview shows the route the rules give; exploration is a coin tossed on submit."""

    def random(self) -> float:
        return 1.0


def trip_options(data) -> tuple[str, dict]:
    """The task and the options from the new-trip form, as the Fahrer takes them."""
    task = data.get("task", "")
    options: dict = {}
    for key in ("gear", "pattern", "tempo"):
        if data.get(key):
            options[key] = data[key]
    if data.get("throttle", "").strip():
        options["throttle"] = data["throttle"].strip()
    lines = [line.strip() for line in data.get("list", "").splitlines() if line.strip()]
    if lines:
        key = LIST_KEY.get(options.get("pattern", ""))
        # Without a chosen pattern the list serves whichever pattern the Kupplung picks.
        for name in [key] if key else ["steps", "members", "items"]:
            options[name] = lines
    return task, options


def _form_context(data=None) -> dict:
    return {
        "gears": Gear.objects.filter(enabled=True)
        .select_related("provider")
        .order_by("tier", "name"),
        "patterns": PATTERNS,
        "tempos": Tempo.values,
        "values": data or {},
        "nav": "new",
    }


@login_required
def trip_new(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        task, options = trip_options(request.POST)
        try:
            trip, _ = services.trip_submit(user=request.user, task=task, options=options)
        except services.ApplicationError as error:
            context = {**_form_context(request.POST), "error": error.message}
            return render(request, "fahrtenbuch/trip_new.html", context, status=error.status)
        return redirect("trip-detail", trip.pk)
    values = {}
    source = request.GET.get("from")
    if source and source.isdigit():
        try:
            original = selectors.trip_for(request.user, int(source))
        except services.ApplicationError:
            original = None
        if original is not None:
            values = {"task": original.task}
    return render(request, "fahrtenbuch/trip_new.html", _form_context(values))


@login_required
@require_POST
def trip_preview(request: HttpRequest) -> HttpResponse:
    """The route the task would take: road, gear, throttle, pattern, cost, zone and why."""
    task, options = trip_options(request.POST)
    context: dict = {"task": task}
    if task.strip():
        try:
            fahrer = Fahrer(user=request.user)
            fahrer.rng = _NoExploration()
            decision = fahrer.entscheiden(task, **options)
            context["decision"] = decision.as_dict()
            context["epsilon"] = fahrer.lage().epsilon
        except services.ApplicationError as error:
            context["error"] = error.message
    return render(request, "fahrtenbuch/trip_new.html#route-preview", context)


def _progress(legs) -> list[dict]:
    phases: dict[int, dict] = defaultdict(lambda: {"total": 0, "done": 0, "failed": 0})
    for leg in legs:
        phase = phases[leg.phase]
        phase["total"] += 1
        if leg.status in (LegStatus.SUCCEEDED, LegStatus.FAILED, LegStatus.CANCELLED):
            phase["done"] += 1
        if leg.status in (LegStatus.FAILED, LegStatus.CANCELLED):
            phase["failed"] += 1
    return [{"phase": number + 1, **phase} for number, phase in sorted(phases.items())]


def trip_state(trip: Trip, *, with_streams: bool = True) -> dict:
    """What the live parts of a trip page show: figures, legs with progress, failovers and,
    while it runs, the output streamed so far. Read again for every live refresh.

    The cursor (the trip's newest event) is read before the trip itself, so the page shows
    at least what that event says and the live feed continues right after it."""
    last_event = (
        TripEvent.objects.filter(trip=trip).order_by("-id").values_list("id", flat=True).first()
        or 0
    )
    trip.refresh_from_db()
    legs = list(trip.legs.order_by("position"))
    streams = {}
    if with_streams and trip.status not in FINISHED_STATUSES:
        streams, _ = selectors.trip_streams(trip, upto=last_event)
    titles = {leg.position: leg.title for leg in legs}
    failovers = [
        e.data for e in TripEvent.objects.filter(trip=trip, kind="failover").order_by("id")
    ]
    return {
        "trip": trip,
        "finished": trip.status in FINISHED_STATUSES,
        "legs": legs,
        "progress": _progress(legs),
        "show_progress": len(legs) > 1,
        "streams": [
            {"position": p, "text": text, "label": titles.get(p, "") if len(legs) > 1 else ""}
            for p, text in streams.items()
        ],
        "failovers": failovers,
        "cursor": last_event,
    }


@login_required
@require_GET
@application_errors()
def trip_detail(request: HttpRequest, trip_id: int) -> HttpResponse:
    trip = selectors.trip_for(request.user, trip_id)
    decision = TripEvent.objects.filter(trip=trip, kind="decision").order_by("id").first()
    context = {**trip_state(trip), "decision": decision.data if decision else {}, "nav": "history"}
    template = "fahrtenbuch/trip_detail.html"
    if request.htmx:
        template += "#trip-live"
    return render(request, template, context)


def _back_to_trip(request: HttpRequest, kwargs: dict) -> str:
    return reverse("trip-detail", args=[kwargs["trip_id"]])


def _after_action(request: HttpRequest, trip: Trip, message: str) -> HttpResponse:
    if request.htmx:
        # The trip's live parts swap in by id; the message goes to #flash, which the live
        # feed never re-renders, so a refresh arriving meanwhile cannot wipe it.
        response = render(
            request, "fahrtenbuch/trip_detail.html#trip-live", {**trip_state(trip), "oob": True}
        )
        response.content += format_html(
            '<div id="flash" aria-live="polite" hx-swap-oob="true"><ul class="messages">'
            '<li class="msg-success">{}</li></ul></div>',
            message,
        ).encode()
        return response
    messages.success(request, message)
    return redirect("trip-detail", trip.pk)


@login_required
@require_POST
@application_errors(back=_back_to_trip)
def trip_cancel(request: HttpRequest, trip_id: int) -> HttpResponse:
    trip = selectors.trip_for(request.user, trip_id)
    services.trip_cancel(trip, by=request.user.get_username())
    return _after_action(request, trip, f"Trip {trip.pk} cancelled.")


@login_required
@require_POST
@application_errors(back=_back_to_trip)
def trip_feedback(request: HttpRequest, trip_id: int) -> HttpResponse:
    trip = selectors.trip_for(request.user, trip_id)
    try:
        thumbs = int(request.POST.get("thumbs", ""))
    except ValueError:
        raise services.ApplicationError("Choose thumbs up or thumbs down.") from None
    note = request.POST.get("note", "")[:5000]
    services.trip_feedback(trip, thumbs=thumbs, note=note)
    word = "thumbs up" if thumbs == 1 else "thumbs down"
    return _after_action(request, trip, f"Thanks: {word} recorded; the Fahrschule learns from it.")


@login_required
@require_POST
@application_errors(back=_back_to_trip)
def trip_again(request: HttpRequest, trip_id: int) -> HttpResponse:
    trip = selectors.trip_for(request.user, trip_id)
    again, _ = services.trip_submit(user=request.user, task=trip.task, options=trip.options)
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = reverse("trip-detail", args=[again.pk])
        return response
    return redirect("trip-detail", again.pk)


# --- history ----------------------------------------------------------------------------


class HistoryForm(forms.Form):
    q = forms.CharField(required=False, max_length=200, label="Search the task")
    road = forms.CharField(required=False)
    gear = forms.CharField(required=False)
    status = forms.ChoiceField(required=False, choices=[("", "any"), *TripStatus.choices])
    person = forms.CharField(required=False, max_length=150)
    since = forms.DateField(required=False, label="From")
    until = forms.DateField(required=False, label="To")
    before = forms.IntegerField(required=False, min_value=1)

    def filters(self) -> selectors.HistoryFilters:
        data = self.cleaned_data if self.is_valid() else {}
        return selectors.HistoryFilters(
            road=data.get("road") or "",
            gear=data.get("gear") or "",
            status=data.get("status") or "",
            person=data.get("person") or "",
            q=(data.get("q") or "").strip(),
            since=data.get("since"),
            until=data.get("until"),
        )


def _query(request: HttpRequest, **changes) -> str:
    params = request.GET.copy()
    for key, value in changes.items():
        params.pop(key, None)
        if value:
            params[key] = value
    return params.urlencode()


@login_required
@require_GET
def history(request: HttpRequest) -> HttpResponse:
    form = HistoryForm(request.GET)
    filters = form.filters()
    before = form.cleaned_data.get("before") if form.is_valid() else None
    trips, next_before = selectors.trip_history(request.user, filters, before=before)
    context = {
        "form": form,
        "filters": filters,
        "trips": trips,
        "next_query": _query(request, before=str(next_before)) if next_before else "",
        "first_query": _query(request, before="") if before else "",
        "export_query": _query(request, before=""),
        "roads": Road.objects.order_by("order", "slug").values_list("slug", "label"),
        "gear_names": Gear.objects.order_by("tier", "name").values_list("name", flat=True),
        "statuses": TripStatus.values,
        "nav": "history",
    }
    template = "fahrtenbuch/history.html"
    if request.htmx and not request.htmx.boosted:
        template += "#trip-table"
    return render(request, template, context)


def _csv_chunk(rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow(
            [v.isoformat() if hasattr(v, "isoformat") else ("" if v is None else v) for v in row]
        )
    return buffer.getvalue()


HEADER = [
    "id", "user", "created_at", "finished_at", "status", "road", "gear", "throttle", "pattern",
    "tempo", "zone", "input_tokens", "output_tokens", "thinking_tokens", "cost_usd",
    "latency_ms", "retries", "failovers", "feedback", "simulated", "task",
]  # fmt: skip


@login_required
@require_GET
def history_csv(request: HttpRequest) -> StreamingHttpResponse:
    """Every trip the history shows, streamed as CSV batch by batch."""
    filters = HistoryForm(request.GET).filters()
    batches = selectors.trip_rows(request.user, filters)

    def lines():
        yield _csv_chunk([HEADER])
        for rows in batches:
            yield _csv_chunk(rows)

    async def alines():
        # Under ASGI a synchronous iterator would be read whole before the first byte goes out.
        yield _csv_chunk([HEADER])
        while (rows := await sync_to_async(next)(batches, None)) is not None:
            yield _csv_chunk(rows)

    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response = StreamingHttpResponse(
        alines() if isinstance(request, ASGIRequest) else lines(),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="clutch-trips-{stamp}.csv"'
    return response
