from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from garage.selectors import gearbox_overview, road_table


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "clutch_site/home.html",
        {"gears": gearbox_overview(), "roads": road_table()},
    )
