"""The Anthropic driver against a local server that speaks the Messages API's SSE stream and
error bodies (docs/research/provider-wire-formats.md §1)."""

import asyncio
import json
from decimal import Decimal

import pytest

from garage.engine.gas import Gas
from garage.engine.types import GearSpec
from garage.motorblock import anthropic, registry
from garage.motorblock.base import Anfrage, ErrorKind, MotorError, ProviderConfig
from tests.motorblock.fakeserver import Reply, sse

KEY = "sk-ant-api03-test-key-never-logged"
SSE = "text/event-stream; charset=utf-8"


def gear(reasoning: str = "effort") -> GearSpec:
    return GearSpec(
        name="claude-sonnet",
        provider="anthropic",
        provider_kind="anthropic",
        model_id="claude-sonnet-5-5",
        tier=3,
        input_price=Decimal("2.00"),
        output_price=Decimal("10.00"),
        cached_input_price=Decimal("0.10"),
        thinking_price=Decimal("10.00"),
        max_output_tokens=128000,
        reasoning=reasoning,
    )


def gas(**changes) -> Gas:
    values = {
        "wert": 0.5,
        "max_output_tokens": 8704,
        "strategy": "balanced",
        "system_prompt": "Work through the task carefully.",
        "timeout_s": 5.0,
    }
    return Gas(**{**values, **changes})


def anfrage(server, *, reasoning="effort", read_timeout_s=5.0, **gas_changes) -> Anfrage:
    if reasoning == "effort":
        gas_changes.setdefault("effort", "medium")
    return Anfrage(
        gear=gear(reasoning),
        messages=({"role": "user", "content": "Write a haiku about gearboxes"},),
        gas=gas(**gas_changes),
        system="Work through the task carefully.",
        provider=ProviderConfig(
            name="anthropic",
            kind="anthropic",
            base_url=server.url,
            api_key=KEY,
            connect_timeout_s=2.0,
            read_timeout_s=read_timeout_s,
        ),
    )


def run(request: Anfrage, deltas: list | None = None):
    on_delta = (lambda kind, text: deltas.append((kind, text))) if deltas is not None else None
    return asyncio.run(anthropic.call(request, on_delta))


def fails(request: Anfrage, deltas: list | None = None) -> MotorError:
    with pytest.raises(MotorError) as info:
        run(request, deltas)
    assert KEY not in info.value.message
    return info.value


def message_start(**usage) -> str:
    usage = {"input_tokens": 25, "output_tokens": 1, **usage}
    return sse(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "claude-sonnet-5-5",
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage,
            },
        },
    )


def block_start(index: int, kind: str = "text") -> str:
    block = {"type": "text", "text": ""} if kind == "text" else {"type": kind, "thinking": ""}
    return sse(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def delta(index: int, text: str, kind: str = "text_delta") -> str:
    field = {"text_delta": "text", "thinking_delta": "thinking", "signature_delta": "signature"}
    return sse(
        "content_block_delta",
        {"type": "content_block_delta", "index": index, "delta": {"type": kind, field[kind]: text}},
    )


def block_stop(index: int) -> str:
    return sse("content_block_stop", {"type": "content_block_stop", "index": index})


def message_delta(stop_reason: str = "end_turn", **usage) -> str:
    return sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": usage or {"output_tokens": 15},
        },
    )


PING = sse("ping", {"type": "ping"})
MESSAGE_STOP = sse("message_stop", {"type": "message_stop"})
HAIKU = [
    message_start(cache_creation_input_tokens=5, cache_read_input_tokens=10),
    block_start(0),
    PING,
    delta(0, "Teeth mesh in the dark,"),
    delta(0, "\nsteel turning steel"),
    block_stop(0),
    message_delta(output_tokens=15),
    MESSAGE_STOP,
]


def stream(chunks: list[str], **options) -> Reply:
    return Reply(chunks=chunks, content_type=SSE, **options)


def error_body(kind: str, message: str) -> dict:
    return {
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
    }


def test_streams_text_with_usage_cost_and_timings(server):
    server.reply(stream(HAIKU))
    deltas: list = []
    antwort = run(anfrage(server), deltas)
    assert antwort.text == "Teeth mesh in the dark,\nsteel turning steel"
    assert deltas == [("text", "Teeth mesh in the dark,"), ("text", "\nsteel turning steel")]
    # Input counts the cache writes and reads too; the reads are the cached part.
    assert antwort.usage.as_dict() == {
        "input_tokens": 40,
        "output_tokens": 15,
        "cached_tokens": 10,
        "thinking_tokens": 0,
    }
    # 30 uncached × $2 + 10 cached × $0.10 + 15 out × $10, per million tokens.
    assert antwort.cost_usd == Decimal("0.000211")
    assert antwort.stop_reason == "end_turn"
    assert antwort.ttft_ms is not None and 0 <= antwort.ttft_ms <= antwort.latency_ms
    assert antwort.extra["message_id"] == "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"
    assert antwort.extra["cache_creation_input_tokens"] == 5
    assert not antwort.simulated


def test_thinking_streams_first_and_its_tokens_are_split_from_the_output(server):
    server.reply(
        stream(
            [
                message_start(),
                block_start(0, "thinking"),
                delta(0, "Let me count syllables:\n\n1. five", "thinking_delta"),
                delta(0, ", seven, five", "thinking_delta"),
                delta(
                    0, "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds", "signature_delta"
                ),
                block_stop(0),
                block_start(1),
                delta(1, "Gears turn"),
                block_stop(1),
                message_delta(output_tokens=120, output_tokens_details={"thinking_tokens": 100}),
                MESSAGE_STOP,
            ]
        )
    )
    deltas: list = []
    antwort = run(anfrage(server), deltas)
    assert [kind for kind, _ in deltas] == ["thinking", "thinking", "text"]
    assert antwort.thinking == "Let me count syllables:\n\n1. five, seven, five"
    assert antwort.text == "Gears turn"
    assert antwort.usage.output_tokens == 20 and antwort.usage.thinking_tokens == 100
    assert antwort.cost_usd == gear().cost(25, 20, 0, 100)


def test_message_delta_usage_is_cumulative_and_the_last_value_wins(server):
    server.reply(
        stream(
            [
                message_start(input_tokens=25),
                block_start(0),
                delta(0, "Hi"),
                block_stop(0),
                message_delta("max_tokens", output_tokens=7),
                message_delta("max_tokens", output_tokens=9, input_tokens=30),
                MESSAGE_STOP,
            ]
        )
    )
    antwort = run(anfrage(server))
    assert antwort.usage.input_tokens == 30 and antwort.usage.output_tokens == 9
    assert antwort.stop_reason == "max_tokens"


def test_unknown_events_and_blocks_are_passed_over(server):
    server.reply(
        stream(
            [
                message_start(),
                sse(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "tool_use", "id": "t"},
                    },
                ),
                sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "input_json_delta", "partial_json": '{"a"'},
                    },
                ),
                block_stop(0),
                sse("brand_new_event", {"type": "brand_new_event"}),
                block_start(1),
                delta(1, "ok"),
                block_stop(1),
                message_delta(),
                MESSAGE_STOP,
            ]
        )
    )
    assert run(anfrage(server)).text == "ok"


def test_request_sends_key_version_model_limits_and_system_prompt(server):
    server.reply(stream(HAIKU))
    run(anfrage(server))
    seen = server.seen[0]
    assert seen.method == "POST" and seen.path == "/v1/messages" and seen.query == {}
    assert seen.headers["x-api-key"] == KEY
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.headers["content-type"] == "application/json"
    assert KEY not in seen.path and "authorization" not in seen.headers
    body = seen.body
    assert body["model"] == "claude-sonnet-5-5"
    assert body["max_tokens"] == 8704
    assert body["stream"] is True
    assert body["system"] == "Work through the task carefully."
    assert body["messages"] == [{"role": "user", "content": "Write a haiku about gearboxes"}]


@pytest.mark.parametrize("effort", ["low", "medium", "high"])
def test_an_effort_gear_asks_for_adaptive_thinking_at_that_effort(server, effort):
    server.reply(stream(HAIKU))
    run(anfrage(server, effort=effort))
    body = server.seen[0].body
    assert body["thinking"] == {"type": "adaptive"}
    assert body["output_config"] == {"effort": effort}


def test_a_budget_gear_sends_its_budget_below_max_tokens(server):
    server.reply(stream(HAIKU))
    run(anfrage(server, reasoning="budget", thinking_budget=6144, max_output_tokens=12000))
    body = server.seen[0].body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 6144}
    assert body["max_tokens"] == 12000 and "output_config" not in body


def test_a_budget_never_reaches_max_tokens(server):
    server.reply(stream(HAIKU))
    run(anfrage(server, reasoning="budget", thinking_budget=4096, max_output_tokens=4096))
    assert server.seen[0].body["thinking"]["budget_tokens"] == 4095


def test_the_brake_on_a_budget_gear_sends_no_thinking(server):
    server.reply(stream(HAIKU))
    run(anfrage(server, reasoning="budget", thinking_budget=None))
    assert "thinking" not in server.seen[0].body
    assert "output_config" not in server.seen[0].body


def test_a_gear_without_reasoning_sends_no_reasoning_fields(server):
    server.reply(stream(HAIKU))
    run(anfrage(server, reasoning="none", effort="high", thinking_budget=4096))
    assert "thinking" not in server.seen[0].body
    assert "output_config" not in server.seen[0].body


@pytest.mark.parametrize(
    "status,kind,message,headers,expected",
    [
        (400, "invalid_request_error", "max_tokens: Field required", {}, ErrorKind.INVALID_REQUEST),
        (401, "authentication_error", "invalid x-api-key", {}, ErrorKind.CREDENTIALS),
        (
            403,
            "permission_error",
            "Your API key does not have permission",
            {},
            ErrorKind.CREDENTIALS,
        ),
        (404, "not_found_error", "model: claude-sonnet-5-5", {}, ErrorKind.INVALID_REQUEST),
        (
            429,
            "rate_limit_error",
            "Number of requests has exceeded your rate limit",
            {"retry-after": "7"},
            ErrorKind.RETRYABLE,
        ),
        (500, "api_error", "Internal server error", {}, ErrorKind.RETRYABLE),
        (529, "overloaded_error", "Overloaded", {}, ErrorKind.RETRYABLE),
        (
            400,
            "invalid_request_error",
            "prompt is too long: 205000 tokens > 200000 maximum",
            {},
            ErrorKind.CONTEXT_TOO_LONG,
        ),
        (
            400,
            "invalid_request_error",
            "input length and `max_tokens` exceed context limit: 199000 + 8000 > 200000",
            {},
            ErrorKind.CONTEXT_TOO_LONG,
        ),
        (
            400,
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
            "Billing to upgrade or purchase credits.",
            {},
            ErrorKind.CREDENTIALS,
        ),
    ],
)
def test_error_answers_are_sorted_by_kind_with_the_providers_message(
    server, status, kind, message, headers, expected
):
    server.reply(
        Reply(status, error_body(kind, message), headers={"request-id": "req_1", **headers})
    )
    error = fails(anfrage(server))
    assert error.kind == expected and error.status == status
    assert message in error.message and kind in error.message


def test_a_rate_limit_carries_the_retry_after_seconds(server):
    server.reply(
        Reply(429, error_body("rate_limit_error", "slow down"), headers={"retry-after": "7"})
    )
    assert fails(anfrage(server)).retry_after == 7.0


def test_a_429_without_retry_after_is_still_retryable(server):
    # Often a spend cap rather than a rate limit; the engine fails over after its retries.
    server.reply(Reply(429, error_body("rate_limit_error", "spend limit reached")))
    error = fails(anfrage(server))
    assert error.kind == ErrorKind.RETRYABLE and error.retry_after is None


def test_an_error_body_that_is_not_json_keeps_its_text(server):
    server.reply(Reply(413, "<html>413 Request Entity Too Large</html>", content_type="text/html"))
    error = fails(anfrage(server))
    assert error.kind == ErrorKind.INVALID_REQUEST and "Request Entity Too Large" in error.message


def test_overloaded_mid_stream_is_retryable_after_the_deltas_so_far(server):
    server.reply(
        stream(
            [
                message_start(),
                block_start(0),
                delta(0, "Teeth mesh"),
                sse(
                    "error",
                    {
                        "type": "error",
                        "error": {"type": "overloaded_error", "message": "Overloaded"},
                    },
                ),
            ]
        )
    )
    deltas: list = []
    error = fails(anfrage(server), deltas)
    assert error.kind == ErrorKind.RETRYABLE and "overloaded_error: Overloaded" in error.message
    assert deltas == [("text", "Teeth mesh")]


def test_an_invalid_request_error_mid_stream_is_not_retried(server):
    server.reply(
        stream(
            [
                message_start(),
                sse(
                    "error",
                    {
                        "type": "error",
                        "error": {"type": "invalid_request_error", "message": "bad block"},
                    },
                ),
            ]
        )
    )
    assert fails(anfrage(server)).kind == ErrorKind.INVALID_REQUEST


def test_malformed_json_in_the_stream_is_retryable(server):
    server.reply(stream([message_start(), 'event: content_block_delta\ndata: {"type": \n\n']))
    error = fails(anfrage(server))
    assert error.kind == ErrorKind.RETRYABLE and "malformed JSON" in error.message


def test_a_connection_dropped_mid_stream_is_retryable(server):
    server.reply(stream(HAIKU, cut_after=4))
    deltas: list = []
    error = fails(anfrage(server), deltas)
    assert error.kind == ErrorKind.RETRYABLE
    assert "stream ended before its final event" in error.message
    assert deltas == [("text", "Teeth mesh in the dark,")]


def test_a_stream_that_ends_without_message_stop_is_retryable(server):
    server.reply(stream(HAIKU[:-1]))
    error = fails(anfrage(server))
    assert error.kind == ErrorKind.RETRYABLE
    assert "stream ended before its final event" in error.message


def test_a_slow_first_byte_hits_the_read_timeout(server):
    server.reply(stream(HAIKU, delay_first_byte_s=0.6))
    error = fails(anfrage(server, read_timeout_s=0.2))
    assert error.kind == ErrorKind.RETRYABLE and "timeout" in error.message


def test_the_gas_timeout_caps_the_read_timeout(server):
    server.reply(stream(HAIKU, delay_first_byte_s=0.6))
    error = fails(anfrage(server, read_timeout_s=30.0, timeout_s=0.2))
    assert error.kind == ErrorKind.RETRYABLE and "timeout" in error.message


def test_a_refused_connection_is_retryable(server):
    request = anfrage(server)
    server.stop()
    error = fails(request)
    assert error.kind == ErrorKind.RETRYABLE and "connection failed" in error.message


def test_cancelling_the_call_propagates(server):
    # The first delta arrives at once, the rest would take seconds.
    server.reply(stream(["".join(HAIKU[:4]), *HAIKU[4:]], delay_between_s=0.5))

    async def cancel_after_first_delta():
        first = asyncio.Event()
        task = asyncio.ensure_future(anthropic.call(anfrage(server), lambda k, t: first.set()))
        await asyncio.wait_for(first.wait(), 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_after_first_delta())


def test_the_key_stays_out_of_the_repr_and_the_answer(server):
    server.reply(stream(HAIKU))
    request = anfrage(server)
    antwort = run(request)
    assert KEY not in repr(request.provider) and KEY not in json.dumps(antwort.extra)


def test_models_lists_every_page_of_ids(server):
    server.reply(
        Reply(
            body={
                "data": [{"type": "model", "id": "claude-sonnet-5-5"}],
                "has_more": True,
                "first_id": "claude-sonnet-5-5",
                "last_id": "claude-sonnet-5-5",
            }
        ),
        Reply(
            body={
                "data": [{"type": "model", "id": "claude-haiku-5-5"}],
                "has_more": False,
                "first_id": "claude-haiku-5-5",
                "last_id": "claude-haiku-5-5",
            }
        ),
    )
    provider = anfrage(server).provider
    assert asyncio.run(anthropic.models(provider)) == ["claude-sonnet-5-5", "claude-haiku-5-5"]
    first, second = server.seen
    assert first.method == "GET" and first.path == "/v1/models"
    assert first.headers["x-api-key"] == KEY and first.headers["anthropic-version"] == "2023-06-01"
    assert second.query["after_id"] == ["claude-sonnet-5-5"]


def test_models_with_a_bad_key_is_a_credentials_error(server):
    server.reply(Reply(401, error_body("authentication_error", "invalid x-api-key")))
    with pytest.raises(MotorError) as info:
        asyncio.run(anthropic.models(anfrage(server).provider))
    assert info.value.kind == ErrorKind.CREDENTIALS


def test_the_registry_routes_anthropic_gears_here(server):
    server.reply(stream(HAIKU))
    assert registry.driver("anthropic") is anthropic and registry.why_unavailable("anthropic") == ""
    antwort = asyncio.run(registry.call(anfrage(server)))
    assert antwort.text.startswith("Teeth mesh")
