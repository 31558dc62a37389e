"""The Gemini driver against a local server that speaks streamGenerateContent's SSE stream and
google.rpc error bodies (docs/research/provider-wire-formats.md §2)."""

import asyncio
import json
from decimal import Decimal

import pytest

from garage.engine.gas import Gas
from garage.engine.types import GearSpec
from garage.motorblock import gemini, registry
from garage.motorblock.base import Anfrage, ErrorKind, MotorError, ProviderConfig
from tests.motorblock.fakeserver import Reply, sse

KEY = "AIzaSy-test-key-never-in-a-url"
SSE = "text/event-stream"
MODEL = "gemini-3.8-flash"


def gear(reasoning: str = "effort") -> GearSpec:
    return GearSpec(
        name="gemini-flash",
        provider="gemini",
        provider_kind="gemini",
        model_id=MODEL,
        tier=2,
        input_price=Decimal("1.50"),
        output_price=Decimal("7.50"),
        cached_input_price=Decimal("0.15"),
        thinking_price=Decimal("7.50"),
        max_output_tokens=65536,
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


def anfrage(server, *, reasoning="effort", read_timeout_s=5.0, messages=None, **gas_changes):
    if reasoning == "effort":
        gas_changes.setdefault("effort", "medium")
    return Anfrage(
        gear=gear(reasoning),
        messages=messages or ({"role": "user", "content": "What is 2 + 2?"},),
        gas=gas(**gas_changes),
        system="You are terse.",
        provider=ProviderConfig(
            name="gemini",
            kind="gemini",
            base_url=server.url,
            api_key=KEY,
            connect_timeout_s=2.0,
            read_timeout_s=read_timeout_s,
        ),
    )


def run(request: Anfrage, deltas: list | None = None):
    on_delta = (lambda kind, text: deltas.append((kind, text))) if deltas is not None else None
    return asyncio.run(gemini.call(request, on_delta))


def fails(request: Anfrage, deltas: list | None = None) -> MotorError:
    with pytest.raises(MotorError) as info:
        run(request, deltas)
    assert KEY not in info.value.message
    return info.value


def chunk(parts: list[dict], usage: dict, finish: str | None = None) -> str:
    candidate: dict = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return sse(
        None,
        {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": MODEL,
            "responseId": "abc",
        },
    )


EARLY_USAGE = {"promptTokenCount": 12, "totalTokenCount": 12}
FINAL_USAGE = {
    "promptTokenCount": 12,
    "cachedContentTokenCount": 4,
    "candidatesTokenCount": 6,
    "thoughtsTokenCount": 87,
    "totalTokenCount": 105,
}
ANSWER = [
    chunk([{"text": "**Planning** I need to add two numbers.", "thought": True}], EARLY_USAGE),
    chunk([{"text": "The answer"}], EARLY_USAGE),
    chunk([{"text": " is 4."}], FINAL_USAGE, "STOP"),
]


def stream(chunks: list[str], **options) -> Reply:
    return Reply(chunks=chunks, content_type=SSE, **options)


def error_body(code: int, status: str, message: str, details: list | None = None) -> dict:
    err: dict = {"code": code, "message": message, "status": status}
    if details is not None:
        err["details"] = details
    return {"error": err}


def test_streams_thoughts_then_text_with_usage_cost_and_timings(server):
    server.reply(stream(ANSWER))
    deltas: list = []
    antwort = run(anfrage(server), deltas)
    assert deltas == [
        ("thinking", "**Planning** I need to add two numbers."),
        ("text", "The answer"),
        ("text", " is 4."),
    ]
    assert antwort.text == "The answer is 4."
    assert antwort.thinking == "**Planning** I need to add two numbers."
    # The prompt count already holds the cached part; thoughts are not in the candidates.
    assert antwort.usage.as_dict() == {
        "input_tokens": 12,
        "output_tokens": 6,
        "cached_tokens": 4,
        "thinking_tokens": 87,
    }
    # 8 uncached × $1.50 + 4 cached × $0.15 + 6 out × $7.50 + 87 thinking × $7.50, per million.
    assert antwort.cost_usd == Decimal("0.0007101")
    assert antwort.stop_reason == "STOP"
    assert antwort.ttft_ms is not None and 0 <= antwort.ttft_ms <= antwort.latency_ms
    assert antwort.extra == {"response_id": "abc", "model_version": MODEL}


def test_request_goes_to_the_model_with_the_key_in_a_header_only(server):
    server.reply(stream(ANSWER))
    run(anfrage(server))
    seen = server.seen[0]
    assert seen.method == "POST"
    assert seen.path == f"/v1beta/models/{MODEL}:streamGenerateContent"
    assert seen.query == {"alt": ["sse"]}
    assert seen.headers["x-goog-api-key"] == KEY
    assert seen.headers["content-type"] == "application/json"
    assert KEY not in seen.path and KEY not in json.dumps(seen.query)
    body = seen.body
    assert body["contents"] == [{"role": "user", "parts": [{"text": "What is 2 + 2?"}]}]
    assert body["systemInstruction"] == {"parts": [{"text": "You are terse."}]}
    assert body["generationConfig"]["maxOutputTokens"] == 8704


def test_assistant_turns_are_sent_as_model_turns(server):
    server.reply(stream(ANSWER))
    history = (
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi"},
        {"role": "user", "content": "What is 2 + 2?"},
    )
    run(anfrage(server, messages=history))
    assert [c["role"] for c in server.seen[0].body["contents"]] == ["user", "model", "user"]


@pytest.mark.parametrize(
    "effort,level",
    [("low", "low"), ("medium", "medium"), ("high", "high"), ("xhigh", "high")],
)
def test_an_effort_gear_sends_a_thinking_level_and_no_budget(server, effort, level):
    server.reply(stream(ANSWER))
    run(anfrage(server, effort=effort, thinking_budget=4096))
    assert server.seen[0].body["generationConfig"]["thinkingConfig"] == {
        "thinkingLevel": level,
        "includeThoughts": True,
    }


def test_a_budget_gear_sends_a_thinking_budget_and_no_level(server):
    server.reply(stream(ANSWER))
    run(anfrage(server, reasoning="budget", thinking_budget=6144, effort="high"))
    assert server.seen[0].body["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 6144,
        "includeThoughts": True,
    }


def test_the_brake_on_a_budget_gear_sends_budget_zero_without_thoughts(server):
    server.reply(stream(ANSWER))
    run(anfrage(server, reasoning="budget", thinking_budget=None))
    assert server.seen[0].body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 0}


def test_a_gear_without_reasoning_sends_no_thinking_config(server):
    server.reply(stream(ANSWER))
    run(anfrage(server, reasoning="none", effort="high"))
    assert "thinkingConfig" not in server.seen[0].body["generationConfig"]


@pytest.mark.parametrize(
    "status,rpc,message,details,expected",
    [
        (
            400,
            "INVALID_ARGUMENT",
            "Invalid value at 'generation_config.max_output_tokens'",
            None,
            ErrorKind.INVALID_REQUEST,
        ),
        (
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            ],
            ErrorKind.CREDENTIALS,
        ),
        (
            400,
            "FAILED_PRECONDITION",
            "User location is not supported for the API use.",
            None,
            ErrorKind.CREDENTIALS,
        ),
        (
            403,
            "PERMISSION_DENIED",
            "The caller does not have permission",
            None,
            ErrorKind.CREDENTIALS,
        ),
        (
            404,
            "NOT_FOUND",
            f"models/{MODEL} is not found for API version v1beta, or is not supported for "
            "generateContent.",
            None,
            ErrorKind.INVALID_REQUEST,
        ),
        (500, "INTERNAL", "An internal error has occurred.", None, ErrorKind.RETRYABLE),
        (
            503,
            "UNAVAILABLE",
            "The model is overloaded. Please try again later.",
            None,
            ErrorKind.RETRYABLE,
        ),
        (
            504,
            "DEADLINE_EXCEEDED",
            "Deadline expired before operation could complete.",
            None,
            ErrorKind.RETRYABLE,
        ),
        (
            400,
            "INVALID_ARGUMENT",
            "The input token count (1200293) exceeds the maximum number of tokens allowed "
            "(1048576).",
            None,
            ErrorKind.CONTEXT_TOO_LONG,
        ),
    ],
)
def test_error_answers_are_sorted_by_kind_with_the_providers_message(
    server, status, rpc, message, details, expected
):
    server.reply(Reply(status, error_body(status, rpc, message, details)))
    error = fails(anfrage(server))
    assert error.kind == expected and error.status == status
    assert message in error.message and rpc in error.message


@pytest.mark.parametrize("delay,seconds", [("17s", 17.0), ("57.238747106s", 57.238747106)])
def test_resource_exhausted_carries_the_retry_delay_from_the_body(server, delay, seconds):
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}],
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
    ]
    message = "You exceeded your current quota, please check your plan and billing details."
    server.reply(Reply(429, error_body(429, "RESOURCE_EXHAUSTED", message, details)))
    error = fails(anfrage(server))
    assert error.kind == ErrorKind.RETRYABLE and error.status == 429
    assert error.retry_after == pytest.approx(seconds)


def test_a_retry_after_header_wins_over_the_body(server):
    server.reply(
        Reply(
            429,
            error_body(
                429,
                "RESOURCE_EXHAUSTED",
                "quota",
                [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "42s"}],
            ),
            headers={"retry-after": "3"},
        )
    )
    assert fails(anfrage(server)).retry_after == 3.0


def test_an_error_list_body_is_read_too(server):
    server.reply(Reply(503, [error_body(503, "UNAVAILABLE", "The model is overloaded.")]))
    error = fails(anfrage(server))
    assert error.kind == ErrorKind.RETRYABLE and "The model is overloaded." in error.message


def test_an_error_chunk_mid_stream_is_classified_by_its_status(server):
    server.reply(
        stream([ANSWER[0], sse(None, error_body(503, "UNAVAILABLE", "The model is overloaded."))])
    )
    deltas: list = []
    error = fails(anfrage(server), deltas)
    assert error.kind == ErrorKind.RETRYABLE and "UNAVAILABLE" in error.message
    assert [kind for kind, _ in deltas] == ["thinking"]


def test_an_unframed_json_error_mid_stream_is_read(server):
    raw = json.dumps(
        error_body(400, "INVALID_ARGUMENT", "Request contains an invalid argument."), indent=2
    )
    server.reply(stream([ANSWER[1], raw + "\n"]))
    error = fails(anfrage(server))
    assert error.kind == ErrorKind.INVALID_REQUEST
    assert "Request contains an invalid argument." in error.message


def test_malformed_json_in_the_stream_is_retryable(server):
    server.reply(stream([ANSWER[1], 'data: {"candidates": [\n\n']))
    error = fails(anfrage(server))
    assert error.kind == ErrorKind.RETRYABLE and "malformed JSON" in error.message


def test_a_connection_dropped_mid_stream_is_retryable(server):
    server.reply(stream(ANSWER, cut_after=2))
    deltas: list = []
    error = fails(anfrage(server), deltas)
    assert error.kind == ErrorKind.RETRYABLE
    assert "stream ended before its final event" in error.message
    assert len(deltas) == 2


def test_a_stream_that_ends_without_a_finish_reason_is_retryable(server):
    server.reply(stream(ANSWER[:2]))
    error = fails(anfrage(server))
    assert error.kind == ErrorKind.RETRYABLE
    assert "stream ended before its final event" in error.message


def test_a_blocked_prompt_fails_fast_with_the_reason(server):
    server.reply(
        stream(
            [
                sse(
                    None,
                    {
                        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                        "usageMetadata": EARLY_USAGE,
                    },
                )
            ]
        )
    )
    error = fails(anfrage(server))
    assert error.kind == ErrorKind.INVALID_REQUEST and "PROHIBITED_CONTENT" in error.message


def test_a_slow_first_byte_hits_the_read_timeout(server):
    server.reply(stream(ANSWER, delay_first_byte_s=0.6))
    error = fails(anfrage(server, read_timeout_s=0.2))
    assert error.kind == ErrorKind.RETRYABLE and "timeout" in error.message


def test_cancelling_the_call_propagates(server):
    server.reply(stream(["".join(ANSWER[:2]), ANSWER[2]], delay_between_s=0.5))

    async def cancel_after_first_delta():
        first = asyncio.Event()
        task = asyncio.ensure_future(gemini.call(anfrage(server), lambda k, t: first.set()))
        await asyncio.wait_for(first.wait(), 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_after_first_delta())


def test_models_lists_every_page_without_the_prefix(server):
    server.reply(
        Reply(
            body={
                "models": [
                    {
                        "name": f"models/{MODEL}",
                        "displayName": "Gemini 3.8 Flash",
                        "supportedGenerationMethods": ["generateContent"],
                    }
                ],
                "nextPageToken": "page-2",
            }
        ),
        Reply(body={"models": [{"name": "models/gemini-4-argon"}]}),
    )
    provider = anfrage(server).provider
    assert asyncio.run(gemini.models(provider)) == [MODEL, "gemini-4-argon"]
    first, second = server.seen
    assert first.method == "GET" and first.path == "/v1beta/models"
    assert first.headers["x-goog-api-key"] == KEY and "key" not in first.query
    assert second.query["pageToken"] == ["page-2"]


def test_models_with_a_bad_key_is_a_credentials_error(server):
    server.reply(
        Reply(
            400,
            error_body(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                [{"reason": "API_KEY_INVALID"}],
            ),
        )
    )
    with pytest.raises(MotorError) as info:
        asyncio.run(gemini.models(anfrage(server).provider))
    assert info.value.kind == ErrorKind.CREDENTIALS and KEY not in info.value.message


def test_the_registry_routes_gemini_gears_here(server):
    server.reply(stream(ANSWER))
    assert registry.driver("gemini") is gemini and registry.why_unavailable("gemini") == ""
    assert asyncio.run(registry.call(anfrage(server))).text == "The answer is 4."
