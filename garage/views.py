"""The Fahrschule page: what the learning engine knows, and training on demand for admins."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from clutch_site.views import application_errors
from fahrtenbuch.services import ApplicationError
from garage.fahrer import Fahrer
from garage.selectors import fahrschule_overview


def _page(request: HttpRequest, **extra) -> HttpResponse:
    template = "garage/fahrschule.html"
    if request.htmx:
        template += "#fahrschule-body"
    return render(request, template, {**fahrschule_overview(), "nav": "fahrschule", **extra})


@login_required
@require_GET
def fahrschule(request: HttpRequest) -> HttpResponse:
    return _page(request)


@login_required
@require_POST
@application_errors(back=lambda request, kwargs: "/fahrschule/")
def fahrschule_train(request: HttpRequest) -> HttpResponse:
    if not request.user.is_staff:
        raise ApplicationError("Training is for admins only.", status=403)
    result = Fahrer(user=request.user).trainieren()
    notice = (
        f"Training run {result['training_run']}: {result['trips_considered']} trips considered, "
        f"{result['policies_changed']} policies changed, "
        f"ε {result['epsilon_before']:.3f} → {result['epsilon_after']:.3f}."
    )
    if request.htmx:
        return _page(request, notice=notice)
    messages.success(request, notice)
    return redirect("fahrschule")
