"""The history: own trips for members, everyone's for admins, filters, search, keyset pages,
htmx partials and the CSV export."""

import csv
import io
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient
from django.utils import timezone

from fahrtenbuch.models import Trip
from garage.fahrer import Fahrer


@pytest.fixture
def car(defaults, monkeypatch):
    monkeypatch.setenv("CLUTCH_PRUEFSTAND_LATENCY", "0")
    return defaults


def submit(user, task) -> Trip:
    trip, _ = Fahrer(user=user, seed=1).submit(task)
    return trip


@pytest.fixture
def trips(car, member, outsider):
    return {
        "bug": submit(member, "Fix the authentication bug in the login module"),
        "typo": submit(member, "Fix the typo in the README"),
        "theirs": submit(outsider, "Fix the payroll bug"),
    }


def rows(response) -> set[int]:
    import re

    return {
        int(pk)
        for pk in re.findall(
            r'<td class="num" data-label="#"><a href="/trips/(\d+)/">', response.text
        )
    }


def test_anonymous_is_sent_to_the_login_page(client, car):
    response = client.get("/trips/")

    assert (response.status_code, response.url) == (302, "/login/?next=/trips/")
    assert client.get("/trips/export.csv").status_code == 302


def test_members_see_their_own_trips_only(member_client, trips):
    response = member_client.get("/trips/")

    assert rows(response) == {trips["bug"].pk, trips["typo"].pk}
    assert "payroll" not in response.text
    assert 'name="person"' not in response.text


def test_the_other_member_sees_theirs(outsider_client, trips):
    assert rows(outsider_client.get("/trips/")) == {trips["theirs"].pk}


def test_admins_see_everyones_trips_and_can_filter_by_person(admin_client, trips):
    assert rows(admin_client.get("/trips/")) == {t.pk for t in trips.values()}
    assert rows(admin_client.get("/trips/?person=otto")) == {trips["theirs"].pk}


def test_a_member_cannot_filter_for_someone_else(member_client, trips):
    assert rows(member_client.get("/trips/?person=otto")) == {trips["bug"].pk, trips["typo"].pk}


def test_filters_by_road_status_gear_and_search(member_client, trips):
    bug, typo = trips["bug"], trips["typo"]

    assert rows(member_client.get(f"/trips/?road={bug.road}")) == {bug.pk}
    assert rows(member_client.get("/trips/?q=TYPO")) == {typo.pk}
    assert rows(member_client.get("/trips/?status=succeeded")) == set()
    assert rows(member_client.get(f"/trips/?gear={typo.gear_name}&road={typo.road}")) == {typo.pk}


def test_filters_by_date_range(member_client, trips):
    old = trips["typo"]
    Trip.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    today = timezone.localdate()

    recent = member_client.get(f"/trips/?since={today - timedelta(days=1)}")
    older = member_client.get(f"/trips/?until={today - timedelta(days=5)}")

    assert trips["bug"].pk in rows(recent) and old.pk not in rows(recent)
    assert rows(older) == {old.pk}


def test_an_invalid_date_is_reported_not_a_500(member_client, trips):
    response = member_client.get("/trips/?since=yesterday")

    assert response.status_code == 200
    assert "Enter a valid date" in response.text


def test_keyset_pages_walk_back_through_all_trips(member_client, member, car):
    made = [submit(member, f"Fix bug number {i}").pk for i in range(120)]

    seen, url, pages = [], "/trips/", 0
    while url:
        response = member_client.get(url)
        seen += sorted(rows(response), reverse=True)
        pages += 1
        marker = 'rel="next"'
        if marker in response.text:
            href = response.text.split(marker)[0].rsplit('href="', 1)[1].split('"')[0]
            url = "/trips/" + href.replace("&amp;", "&")
        else:
            url = None

    assert pages == 3
    assert seen == sorted(made, reverse=True)


def test_htmx_filtering_returns_the_table_partial(member_client, trips):
    response = member_client.get("/trips/?q=typo", HTTP_HX_REQUEST="true")

    assert response.text.lstrip().startswith('<div id="trip-table">')
    assert "<html" not in response.text
    assert rows(response) == {trips["typo"].pk}


def test_filter_form_pushes_the_url_and_keeps_real_links(member_client, trips):
    text = member_client.get("/trips/").text

    assert 'hx-push-url="true"' in text
    assert f'href="/trips/{trips["bug"].pk}/"' in text


def test_csv_export_streams_the_filtered_trips(member_client, trips):
    response = member_client.get("/trips/export.csv?q=bug")

    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert table[0][:3] == ["id", "user", "created_at"]
    assert [int(r[0]) for r in table[1:]] == [trips["bug"].pk]
    assert table[1][-1] == "Fix the authentication bug in the login module"


def test_csv_export_for_admins_has_everyone(admin_client, trips):
    response = admin_client.get("/trips/export.csv")

    body = b"".join(response.streaming_content).decode()
    assert len(list(csv.reader(io.StringIO(body)))) == 4
    assert "payroll" in body


def test_csv_export_of_a_member_leaves_out_the_others(member_client, trips):
    body = b"".join(member_client.get("/trips/export.csv").streaming_content).decode()

    assert "payroll" not in body


@pytest.mark.django_db(transaction=True)
def test_csv_export_streams_asynchronously_under_asgi(member, trips):
    client = AsyncClient()
    client.force_login(member)

    async def fetch():
        response = await client.get("/trips/export.csv")
        return response, b"".join([chunk async for chunk in response.streaming_content])

    response, body = async_to_sync(fetch)()

    assert response.is_async
    assert body.decode().count("\n") == 3
