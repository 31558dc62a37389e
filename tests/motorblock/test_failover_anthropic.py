"""End to end on the real Anthropic driver: `manage.py fahren` against a local server that
speaks the Messages API, first answering, then overloaded until the trip fails over."""

import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from fahrtenbuch.models import Trip, TripEvent
from garage.models import FitnessCriteria, Gear, Provider
from tests.motorblock.fakeserver import Reply, sse

pytestmark = pytest.mark.django_db

KEY = "sk-ant-api03-integration-test-key"
TASK = "Write a haiku about gearboxes"
HAIKU = [
    "Teeth mesh in the dark,",
    "\nsteel turning steel, clutch let go:",
    "\nthe road takes the load.",
]


def answer(model: str, *, input_tokens: int = 31, output_tokens: int = 24) -> Reply:
    """A whole Messages stream, as the API sends it."""
    events = [
        sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": model,
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": input_tokens,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": 1,
                    },
                },
            },
        ),
        sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        sse("ping", {"type": "ping"}),
        *(
            sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": line},
                },
            )
            for line in HAIKU
        ),
        sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        ),
        sse("message_stop", {"type": "message_stop"}),
    ]
    return Reply(chunks=events, content_type="text/event-stream; charset=utf-8")


OVERLOADED = Reply(
    529,
    {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
    },
)


@pytest.fixture
def anthropic_only(defaults, server, monkeypatch):
    """Only the Anthropic key is set, its base URL is the local server, no Prüfstand."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    monkeypatch.setenv("CLUTCH_PRUEFSTAND", "0")
    monkeypatch.setattr("garage.fahrt.RETRY_BASE_S", 0.0)
    assert Provider.objects.get(name="anthropic").base_url_env == "ANTHROPIC_BASE_URL"
    # Keyless local providers would be preferred on failover (another provider first) if this
    # machine could run them; the test is about Anthropic alone.
    Provider.objects.exclude(kind="anthropic").update(enabled=False)
    FitnessCriteria.objects.update(epsilon_start=0.0)  # no exploration: the table's gear
    return server


def fahren() -> dict:
    out = StringIO()
    call_command("fahren", TASK, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_fahren_streams_the_answer_and_records_usage_and_cost(anthropic_only):
    server = anthropic_only
    server.reply(answer("claude-sonnet-5-5"))
    result = fahren()

    assert result["status"] == "succeeded" and result["gear"]["name"] == "claude-sonnet"
    assert result["simulated"] is False
    trip = Trip.objects.get(pk=result["trip_id"])
    assert trip.output == result["output"] == "".join(HAIKU)
    assert (trip.input_tokens, trip.output_tokens) == (31, 24)
    sonnet = Gear.objects.get(name="claude-sonnet")
    # 31 in × $2 + 24 out × $10 per million tokens
    assert (
        trip.cost_usd
        == Decimal("0.000302")
        == 31 * sonnet.input_price / 10**6 + 24 * sonnet.output_price / 10**6
    )
    assert trip.cost_usd > 0 and result["cost_usd"] == str(trip.cost_usd)
    assert not trip.simulated and trip.ttft_ms is not None
    streamed = "".join(
        "".join(e.data["chunks"].values())
        for e in TripEvent.objects.filter(trip=trip, kind="output")
    )
    assert streamed == "".join(HAIKU)

    (seen,) = server.seen
    assert seen.path == "/v1/messages" and seen.headers["x-api-key"] == KEY
    assert seen.body["model"] == "claude-sonnet-5-5" and seen.body["messages"][0]["content"] == TASK
    assert seen.body["thinking"] == {"type": "adaptive"}
    assert seen.body["output_config"] == {"effort": "medium"}
    assert seen.body["system"]  # the Gas strategy prompt
    assert KEY not in json.dumps(
        list(TripEvent.objects.filter(trip=trip).values_list("data", flat=True))
    )


def test_three_overloaded_answers_fail_over_to_another_anthropic_gear(anthropic_only):
    server = anthropic_only
    server.reply(OVERLOADED, OVERLOADED, OVERLOADED, answer("claude-haiku-5-5", output_tokens=22))
    result = fahren()

    trip = Trip.objects.get(pk=result["trip_id"])
    assert trip.status == "succeeded" and trip.output == "".join(HAIKU)
    assert trip.failovers == 1 and trip.retries == 2
    said = [r["message"] for r in trip.reasons if r["step"] == "failover"]
    assert len(said) == 1 and "failed over to claude-haiku" in said[0] and "529" in said[0]
    leg = trip.legs.get()
    assert leg.gear_name == "claude-haiku"
    assert [(a["gear"], a["outcome"]) for a in leg.attempts] == [
        ("claude-sonnet", "error"),
        ("claude-sonnet", "error"),
        ("claude-sonnet", "error"),
        ("claude-haiku", "ok"),
    ]
    for attempt in leg.attempts[:3]:
        assert attempt["error"]["status"] == 529 and attempt["error"]["kind"] == "retryable"
        assert "overloaded_error: Overloaded" in attempt["error"]["message"]
    failover = TripEvent.objects.get(trip=trip, kind="failover")
    assert failover.data["to"] == "claude-haiku" and "Overloaded" in failover.data["reason"]

    haiku = Gear.objects.get(name="claude-haiku")
    assert (trip.input_tokens, trip.output_tokens) == (31, 22)
    assert trip.cost_usd == (31 * haiku.input_price + 22 * haiku.output_price) / 10**6 > 0
    assert [s.body["model"] for s in server.seen] == ["claude-sonnet-5-5"] * 3 + [
        "claude-haiku-5-5"
    ]
