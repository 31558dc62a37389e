"""Schemathesis against /api/openapi.json: whatever it sends, the API never answers 5xx.

Every operation of the schema is called with generated (valid and invalid) input, with a real
member's token, in process. Trips that get queued run at once in Huey's immediate mode on the
Prüfstand without latency, so /api/run answers quickly."""

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from huey.contrib.djhuey import HUEY
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from clutch_site.services import api_token_create

schema = schemathesis.openapi.from_wsgi("/api/openapi.json", get_wsgi_application())


@pytest.fixture
def token(transactional_db, defaults, member, monkeypatch):
    monkeypatch.setenv("CLUTCH_PRUEFSTAND_LATENCY", "0")
    was = HUEY.immediate
    HUEY.immediate = True
    yield api_token_create(user=member, name="schemathesis")[1]
    HUEY.immediate = was


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_no_operation_answers_with_a_server_error(case, token):
    if case.operation.path == "/api/run" and isinstance(case.body, dict):
        case.body["wait_s"] = 1  # the trip ran already (immediate mode); never wait minutes
    response = case.call(headers={"Authorization": f"Bearer {token}"})
    case.validate_response(response, checks=[not_a_server_error])
