"""Every endpoint of /api/: success, and 401/403/404/409/413/422 where they apply."""

import time

import pytest
from django.test import Client

from clutch_site.services import api_token_create
from fahrtenbuch.models import Trip
from garage.models import FitnessCriteria

BUG = "Fix the authentication bug in the login module"


class Api:
    def __init__(self, token: str | None) -> None:
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str, **params):
        return self.client.get(f"/api{path}", params, headers=self.headers)

    def post(self, path: str, body: dict | None = None):
        return self.client.post(
            f"/api{path}", body or {}, content_type="application/json", headers=self.headers
        )


@pytest.fixture
def car(defaults, monkeypatch):
    monkeypatch.setenv("CLUTCH_PRUEFSTAND_LATENCY", "0")
    monkeypatch.delenv("CLUTCH_PRUEFSTAND", raising=False)
    FitnessCriteria.objects.update(epsilon_start=0)  # no exploration: decisions are exact
    return defaults


@pytest.fixture
def member_api(member, car):
    return Api(api_token_create(user=member, name="t")[1])


@pytest.fixture
def outsider_api(outsider, car):
    return Api(api_token_create(user=outsider, name="t")[1])


@pytest.fixture
def admin_api(admin_user, car):
    return Api(api_token_create(user=admin_user, name="t")[1])


def make_trip(user, status="succeeded", **fields) -> Trip:
    return Trip.objects.create(
        user=user,
        task="old task",
        status=status,
        road="feldweg",
        gear_name="claude-haiku",
        pattern="single",
        **fields,
    )


@pytest.mark.parametrize(
    "method,path",
    [
        ("post", "/route"),
        ("post", "/trips"),
        ("post", "/run"),
        ("get", "/trips"),
        ("get", "/trips/1"),
        ("post", "/trips/1/cancel"),
        ("post", "/trips/1/feedback"),
        ("get", "/status"),
        ("get", "/gears"),
        ("get", "/roads"),
        ("post", "/training"),
    ],
)
def test_every_endpoint_needs_a_valid_token(car, method, path):
    for api in (Api(None), Api("clutch_not-a-real-token")):
        response = getattr(api, method)(path)
        assert response.status_code == 401
        assert "Authorization: Bearer" in response.json()["detail"]


def test_route_decides_without_running(member_api):
    response = member_api.post("/route", {"task": BUG})
    assert response.status_code == 200
    body = response.json()
    assert body["road"] == "bundesstrasse" and body["gear"]["tier"] == 3 and body["throttle"] == 0.7
    assert body["zone"] == "green" and body["reasons"] and float(body["estimated_cost_usd"]) > 0
    assert Trip.objects.count() == 0


@pytest.mark.parametrize(
    "body,fragment",
    [
        ({"task": ""}, "empty"),
        ({"task": "   "}, "empty"),
        ({}, "task"),
        ({"task": BUG, "throttle": 1.5}, "throttle"),
        ({"task": BUG, "pattern": "zigzag"}, "pattern"),
        ({"task": BUG, "tempo": "slow"}, "tempo"),
        ({"task": BUG, "items": "a,b"}, "items"),
        ({"task": BUG, "pruefstand": {"error_kinds": ["meteor"]}}, "meteor"),
    ],
)
def test_invalid_submissions_get_422_saying_what_to_fix(member_api, body, fragment):
    for path in ("/route", "/trips", "/run"):
        response = member_api.post(path, body)
        assert response.status_code == 422, (path, response.content)
        assert fragment in response.json()["detail"]
    assert Trip.objects.count() == 0


def test_a_task_over_the_limit_gets_413_naming_the_limit(member_api, settings):
    settings.CLUTCH_MAX_TASK_CHARS = 1000
    response = member_api.post("/trips", {"task": "x" * 1001})
    assert response.status_code == 413 and "limit is 1000" in response.json()["detail"]


def test_submit_returns_202_with_the_trip_and_the_decision(
    member_api, member, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = member_api.post("/trips", {"task": BUG, "idempotency_key": "k1"})
    assert response.status_code == 202
    body = response.json()
    assert body["trip"]["status"] == "queued" and body["trip"]["user"] == "mia" and body["created"]
    assert body["decision"]["road"] == "bundesstrasse"
    assert len(callbacks) == 1, "the trip is enqueued once the transaction commits"
    again = member_api.post("/trips", {"task": BUG, "idempotency_key": "k1"}).json()
    assert again["trip"]["id"] == body["trip"]["id"] and not again["created"]
    assert Trip.objects.count() == 1


def test_an_unknown_gear_is_a_422_listing_the_gears(member_api):
    response = member_api.post("/trips", {"task": BUG, "gear": "no-such-gear"})
    assert response.status_code == 422
    assert (
        "no-such-gear" in response.json()["detail"] and "claude-sonnet" in response.json()["detail"]
    )
    assert Trip.objects.count() == 0


def test_a_refused_submission_is_recorded_with_its_reason(member_api):
    from decimal import Decimal

    from garage import tankuhr
    from garage.models import Provider

    Provider.objects.filter(kind__in=["ollama", "llamacpp"]).update(enabled=False)
    tankuhr.reserve(amount=Decimal("45"))  # 90 % of the daily limit: red
    response = member_api.post("/trips", {"task": BUG})
    assert response.status_code == 202
    trip = response.json()["trip"]
    assert trip["status"] == "refused" and "paid gears are refused" in trip["error"]


def test_list_shows_members_their_own_trips_and_admins_all(member_api, admin_api, member, outsider):
    mine = [make_trip(member) for _ in range(3)]
    make_trip(outsider)
    ids = [t["id"] for t in member_api.get("/trips").json()["items"]]
    assert ids == [t.pk for t in reversed(mine)]
    assert len(admin_api.get("/trips").json()["items"]) == 4
    assert [t["user"] for t in admin_api.get("/trips", user="otto").json()["items"]] == ["otto"]


def test_list_filters_and_keyset_pagination(member_api, member):
    trips = [make_trip(member, status="failed" if i % 2 else "succeeded") for i in range(7)]
    page = member_api.get("/trips", limit=3).json()
    assert [t["id"] for t in page["items"]] == [t.pk for t in trips[::-1][:3]]
    second = member_api.get("/trips", limit=3, before=page["next_before"]).json()
    assert [t["id"] for t in second["items"]] == [t.pk for t in trips[::-1][3:6]]
    assert {t["status"] for t in member_api.get("/trips", status="failed").json()["items"]} == {
        "failed"
    }
    assert member_api.get("/trips", limit=0).status_code == 422
    assert member_api.get("/trips", status="nonsense").status_code == 422


def test_read_a_trip_with_its_legs_and_the_permissions(member_api, outsider_api, admin_api, member):
    trip = make_trip(member)
    trip.legs.create(position=1, gear_name="claude-haiku", status="succeeded", output="ok")
    body = member_api.get(f"/trips/{trip.pk}").json()
    assert body["id"] == trip.pk and body["legs"][0]["gear"] == "claude-haiku"
    assert outsider_api.get(f"/trips/{trip.pk}").status_code == 403
    assert "someone else" in outsider_api.get(f"/trips/{trip.pk}").json()["detail"]
    assert admin_api.get(f"/trips/{trip.pk}").status_code == 200
    assert member_api.get("/trips/999999").status_code == 404


def test_cancel_a_queued_trip_and_not_a_finished_one(member_api, outsider_api, member):
    queued = make_trip(member, status="queued")
    assert outsider_api.post(f"/trips/{queued.pk}/cancel").status_code == 403
    response = member_api.post(f"/trips/{queued.pk}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    again = member_api.post(f"/trips/{queued.pk}/cancel")
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]
    assert member_api.post("/trips/424242/cancel").status_code == 404


def test_feedback_on_a_finished_trip(member_api, outsider_api, member):
    trip = make_trip(member)
    response = member_api.post(f"/trips/{trip.pk}/feedback", {"thumbs": -1, "note": "wrong file"})
    assert response.status_code == 200 and response.json()["feedback"] == -1
    trip.refresh_from_db()
    assert trip.feedback_note == "wrong file"
    assert member_api.post(f"/trips/{trip.pk}/feedback", {"thumbs": 5}).status_code == 422
    assert outsider_api.post(f"/trips/{trip.pk}/feedback", {"thumbs": 1}).status_code == 403
    running = make_trip(member, status="running")
    assert member_api.post(f"/trips/{running.pk}/feedback", {"thumbs": 1}).status_code == 409


def test_status_gears_and_roads(member_api):
    status = member_api.get("/status").json()
    assert status["tankuhr"]["zone"] == "green" and "day_limit_usd" in status["tankuhr"]
    assert {"getriebe", "bordcomputer", "tacho"} <= set(status)
    gears = {g["name"]: g for g in member_api.get("/gears").json()}
    assert gears["claude-sonnet"]["available"] and gears["claude-sonnet"]["simulated"]
    assert "api_key" not in str(gears).lower()
    roads = member_api.get("/roads").json()
    assert len(roads) == 10 and roads[0]["slug"] == "feldweg"


def test_training_is_for_admins_only(member_api, admin_api):
    response = member_api.post("/training")
    assert response.status_code == 403 and "admins" in response.json()["detail"]
    report = admin_api.post("/training")
    assert report.status_code == 200 and "epsilon_after" in report.json()


def test_openapi_and_docs_are_served(member_api):
    schema = Client().get("/api/openapi.json")
    assert schema.status_code == 200 and "/api/trips" in schema.json()["paths"]
    assert Client().get("/api/docs").status_code == 200


@pytest.mark.scaleout
def test_run_through_the_real_queue_returns_the_result(member, car, huey_consumer):
    api = Api(api_token_create(user=member, name="t")[1])
    response = api.post("/run", {"task": BUG, "wait_s": 30})
    assert response.status_code == 200, huey_consumer.log.read_text()
    body = response.json()
    assert body["finished"] and body["trip"]["status"] == "succeeded"
    assert body["trip"]["legs"][0]["status"] == "succeeded" and body["trip"]["output"]


@pytest.mark.scaleout
def test_run_that_takes_longer_returns_202_with_the_trip_id(member, car, huey_consumer):
    api = Api(api_token_create(user=member, name="t")[1])
    response = api.post(
        "/run",
        {
            "task": BUG,
            "wait_s": 0.05,
            "pruefstand": {"slow_first_byte_ms": 1500, "latency_scale": 0},
        },
    )
    assert response.status_code == 202
    body = response.json()
    assert not body["finished"] and f"/api/trips/{body['trip']['id']}" in body["message"]
    deadline = time.monotonic() + 20
    while Trip.objects.get(pk=body["trip"]["id"]).status != "succeeded":
        assert time.monotonic() < deadline, huey_consumer.log.read_text()
        time.sleep(0.05)


def test_a_trip_deleted_while_run_waits_is_a_404_not_a_500(db):
    from fahrtenbuch.api import _detail
    from fahrtenbuch.services import ApplicationError

    with pytest.raises(ApplicationError) as caught:
        _detail(987654)
    assert caught.value.status == 404 and "deleted" in caught.value.message
