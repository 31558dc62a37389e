"""The OpenAI-compatible driver against a local server speaking Chat Completions SSE."""

import asyncio
import json
import time
from decimal import Decimal

import pytest

from garage.engine.gas import gas_geben
from garage.engine.types import GearSpec
from garage.motorblock import openai_compat
from garage.motorblock.base import Anfrage, ErrorKind, MotorError, ProviderConfig
from tests.motorblock.fakeserver import Reply, sse, unused_url

SSE = "text/event-stream"
SYSTEM = "Work through the task carefully."
KEY = "sk-test-0123456789abcdef"

GPT = GearSpec(
    name="openai-gpt",
    provider="openai",
    provider_kind="openai",
    model_id="gpt-6.1-terra",
    tier=2,
    input_price=Decimal("1.00"),
    output_price=Decimal("5.00"),
    cached_input_price=Decimal("0.05"),
    thinking_price=Decimal("5.00"),
    context_window=1_050_000,
    max_output_tokens=128_000,
    reasoning="effort",
)
LOCAL = GearSpec(
    name="vllm-qwen",
    provider="openai",
    provider_kind="openai",
    model_id="Qwen/Qwen3-8B",
    tier=1,
    max_output_tokens=8192,
)


def chunk(delta: dict, finish_reason: str | None = None) -> str:
    return sse(
        None,
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1694268190,
            "model": "gpt-6.1-terra",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": None,
        },
    )


def usage_chunk(prompt=1200, completion=350, cached=1000, reasoning=280) -> str:
    return sse(
        None,
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1694268190,
            "model": "gpt-6.1-terra",
            "choices": [],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": cached},
                "completion_tokens_details": {"reasoning_tokens": reasoning},
            },
        },
    )


DONE = "data: [DONE]\n\n"
STREAM = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"reasoning_content": "Let me think"}),
    chunk({"reasoning_content": " about it."}),
    chunk({"content": "Hello"}),
    chunk({"content": " world."}),
    chunk({}, "stop"),
    usage_chunk(),
    DONE,
]


def anfrage(
    url: str,
    *,
    gear: GearSpec = GPT,
    throttle: float = 0.8,
    read_timeout_s: float = 5.0,
    api_key: str = KEY,
) -> Anfrage:
    return Anfrage(
        gear=gear,
        messages=({"role": "user", "content": "Say hello."},),
        gas=gas_geben(gear, throttle),
        system=SYSTEM,
        provider=ProviderConfig(
            name="openai",
            kind="openai",
            base_url=f"{url}/v1",
            api_key=api_key,
            connect_timeout_s=1.0,
            read_timeout_s=read_timeout_s,
        ),
    )


def run(request: Anfrage, deltas: list | None = None):
    on_delta = (lambda kind, text: deltas.append((kind, text))) if deltas is not None else None
    return asyncio.run(openai_compat.call(request, on_delta))


def fails(request: Anfrage) -> MotorError:
    with pytest.raises(MotorError) as caught:
        run(request)
    assert KEY not in caught.value.message
    return caught.value


def error_body(message: str, type_: str, code=None, param=None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def test_full_stream_gives_text_thinking_usage_cost_and_timings(server):
    server.reply(Reply(chunks=STREAM, content_type=SSE))
    deltas = []
    antwort = run(anfrage(server.url), deltas)
    assert deltas == [
        ("thinking", "Let me think"),
        ("thinking", " about it."),
        ("text", "Hello"),
        ("text", " world."),
    ]
    assert antwort.text == "Hello world."
    assert antwort.thinking == "Let me think about it."
    # completion_tokens includes the reasoning tokens; Usage keeps them apart.
    assert antwort.usage.as_dict() == {
        "input_tokens": 1200,
        "output_tokens": 70,
        "cached_tokens": 1000,
        "thinking_tokens": 280,
    }
    # 200 uncached × $1 + 1000 cached × $0.05 + 70 output × $5 + 280 thinking × $5, per Mtok.
    assert antwort.cost_usd == Decimal("0.0002") + Decimal("0.00005") + Decimal("0.00035") + (
        Decimal("0.0014")
    )
    assert antwort.stop_reason == "stop"
    assert antwort.ttft_ms is not None
    assert 0 <= antwort.ttft_ms <= antwort.latency_ms
    assert antwort.extra == {}


def test_newer_vllm_reasoning_field_streams_as_thinking(server):
    stream = [chunk({"reasoning": "Hmm."}), chunk({"content": "Yes."}, "stop"), usage_chunk(), DONE]
    server.reply(Reply(chunks=stream, content_type=SSE))
    deltas = []
    antwort = run(anfrage(server.url, gear=LOCAL), deltas)
    assert deltas == [("thinking", "Hmm."), ("text", "Yes.")]
    assert antwort.thinking == "Hmm."


def test_usage_chunk_with_null_choices_is_read(server):
    usage = json.loads(usage_chunk().removeprefix("data: "))
    usage["choices"] = None
    stream = [chunk({"content": "Hi"}, "stop"), sse(None, usage), DONE]
    server.reply(Reply(chunks=stream, content_type=SSE))
    assert run(anfrage(server.url)).usage.input_tokens == 1200


def test_server_without_usage_gets_an_estimate_marked_as_such(server):
    stream = [chunk({"content": "Hello world, how are you?"}, "stop"), DONE]
    server.reply(Reply(chunks=stream, content_type=SSE))
    antwort = run(anfrage(server.url, gear=LOCAL))
    assert antwort.extra == {"usage_estimated": True}
    assert antwort.usage.input_tokens > 0
    assert antwort.usage.output_tokens > 0


def test_request_to_openai_itself(server):
    server.reply(Reply(chunks=STREAM, content_type=SSE))
    request = anfrage(server.url, throttle=0.8)
    run(request)
    seen = server.seen[0]
    assert (seen.method, seen.path, seen.query) == ("POST", "/v1/chat/completions", {})
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in seen.path + json.dumps(seen.query) + json.dumps(seen.body)
    body = seen.body
    assert body["model"] == "gpt-6.1-terra"
    assert body["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Say hello."},
    ]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["reasoning_effort"] == "high"
    assert body["max_tokens"] == request.gas.max_output_tokens  # a local URL: the old name


def test_brake_asks_for_low_effort(server):
    server.reply(Reply(chunks=STREAM, content_type=SSE))
    run(anfrage(server.url, throttle=0.1))
    assert server.seen[0].body["reasoning_effort"] == "low"


def test_gear_without_reasoning_sends_no_effort(server):
    server.reply(Reply(chunks=STREAM, content_type=SSE))
    run(anfrage(server.url, gear=LOCAL))
    assert "reasoning_effort" not in server.seen[0].body


def test_local_server_without_key_gets_no_authorization_header(server):
    server.reply(Reply(chunks=STREAM, content_type=SSE))
    run(anfrage(server.url, gear=LOCAL, api_key=""))
    assert "authorization" not in server.seen[0].headers


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("https://api.openai.com/v1/chat/completions", "max_completion_tokens"),
        ("https://my-team.openai.azure.com/openai/v1/chat/completions", "max_completion_tokens"),
        ("http://localhost:8000/v1/chat/completions", "max_tokens"),
        ("http://127.0.0.1:11434/v1/chat/completions", "max_tokens"),
        ("https://openrouter.ai/api/v1/chat/completions", "max_tokens"),
    ],
)
def test_output_cap_uses_the_name_the_backend_knows(url, field):
    assert openai_compat.token_field(url) == field


def test_refused_cap_name_is_sent_again_under_the_other_name(server):
    refused = error_body(
        "Unsupported parameter: 'max_tokens' is not supported with this model. "
        "Use 'max_completion_tokens' instead.",
        "invalid_request_error",
        code="unsupported_parameter",
        param="max_tokens",
    )
    server.reply(Reply(400, refused), Reply(chunks=STREAM, content_type=SSE))
    request = anfrage(server.url)
    assert run(request).text == "Hello world."
    first, second = (seen.body for seen in server.seen)
    assert first["max_tokens"] == request.gas.max_output_tokens
    assert "max_tokens" not in second
    assert second["max_completion_tokens"] == request.gas.max_output_tokens


def test_unknown_model_is_an_invalid_request_with_the_providers_message(server):
    message = "The model `gpt-9` does not exist or you do not have access to it."
    server.reply(Reply(404, error_body(message, "invalid_request_error", "model_not_found")))
    error = fails(anfrage(server.url))
    assert (error.kind, error.status) == (ErrorKind.INVALID_REQUEST, 404)
    assert message in error.message


def test_bad_parameter_is_an_invalid_request_with_the_providers_message(server):
    message = "Invalid value: 'extreme'. Supported values are: 'low', 'medium', and 'high'."
    server.reply(Reply(400, error_body(message, "invalid_request_error", "invalid_value")))
    error = fails(anfrage(server.url))
    assert (error.kind, error.status) == (ErrorKind.INVALID_REQUEST, 400)
    assert message in error.message


def test_flat_error_body_of_older_vllm_is_read(server):
    flat = {
        "object": "error",
        "message": "The model `qwen` does not exist.",
        "type": "NotFoundError",
        "param": None,
        "code": 404,
    }
    server.reply(Reply(404, flat))
    error = fails(anfrage(server.url, gear=LOCAL))
    assert error.kind == ErrorKind.INVALID_REQUEST
    assert "The model `qwen` does not exist." in error.message


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (
            400,
            error_body(
                "This model's maximum context length is 8192 tokens. However, your messages "
                "resulted in 9000 tokens.",
                "invalid_request_error",
                "context_length_exceeded",
                "messages",
            ),
        ),
        (
            400,
            {
                "error": {
                    "code": 400,
                    "message": "request (4390 tokens) exceeds the available context size "
                    "(4096 tokens), try increasing it",
                    "type": "exceed_context_size_error",
                    "n_prompt_tokens": 4390,
                    "n_ctx": 4096,
                }
            },
        ),
        (500, error_body("Context size has been exceeded.", "server_error", 500)),
    ],
    ids=["openai", "llama.cpp", "older-llama.cpp"],
)
def test_prompt_beyond_the_window_is_context_too_long(server, status, body):
    server.reply(Reply(status, body))
    assert fails(anfrage(server.url)).kind == ErrorKind.CONTEXT_TOO_LONG


def test_wrong_key_is_a_credentials_error_without_the_key(server):
    message = f"Incorrect API key provided: {KEY}. You can find your API key at https://x."
    server.reply(Reply(401, error_body(message, "invalid_request_error", "invalid_api_key")))
    error = fails(anfrage(server.url))
    assert (error.kind, error.status) == (ErrorKind.CREDENTIALS, 401)
    assert "Incorrect API key provided" in error.message


def test_forbidden_is_a_credentials_error(server):
    message = "You are not allowed to sample from this model"
    server.reply(Reply(403, error_body(message, "invalid_request_error")))
    assert fails(anfrage(server.url)).kind == ErrorKind.CREDENTIALS


def test_rate_limit_is_retryable_after_the_servers_delay(server):
    message = (
        "Rate limit reached for gpt-6.1-terra on tokens per min (TPM): Limit 30000, "
        "Used 28000, Requested 5000. Please try again in 1.2s."
    )
    body = error_body(message, "tokens", "rate_limit_exceeded")
    server.reply(Reply(429, body, headers={"retry-after": "2"}))
    error = fails(anfrage(server.url))
    assert (error.kind, error.status, error.retry_after) == (ErrorKind.RETRYABLE, 429, 2.0)


def test_retry_after_ms_is_preferred(server):
    body = error_body("Rate limit reached", "requests", "rate_limit_exceeded")
    server.reply(Reply(429, body, headers={"retry-after": "2", "retry-after-ms": "1200"}))
    assert fails(anfrage(server.url)).retry_after == 1.2


def test_exhausted_quota_is_not_retried(server):
    message = "You exceeded your current quota, please check your plan and billing details."
    server.reply(Reply(429, error_body(message, "insufficient_quota", "insufficient_quota")))
    error = fails(anfrage(server.url))
    assert error.kind == ErrorKind.CREDENTIALS
    assert "exceeded your current quota" in error.message


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (500, "The server had an error while processing your request. Sorry about that!"),
        (503, "The engine is currently overloaded, please try again later"),
    ],
)
def test_server_errors_and_overload_are_retryable(server, status, message):
    server.reply(Reply(status, error_body(message, "server_error")))
    error = fails(anfrage(server.url))
    assert (error.kind, error.status) == (ErrorKind.RETRYABLE, status)
    assert message in error.message


def test_malformed_json_in_the_stream_is_retryable(server):
    stream = [chunk({"content": "Hel"}), 'data: {"id": "chatcmpl-1", "choi\n\n', DONE]
    server.reply(Reply(chunks=stream, content_type=SSE))
    error = fails(anfrage(server.url))
    assert error.kind == ErrorKind.RETRYABLE
    assert "malformed JSON" in error.message


def test_connection_cut_mid_stream_is_retryable(server):
    server.reply(Reply(chunks=STREAM, content_type=SSE, cut_after=4))
    error = fails(anfrage(server.url))
    assert error.kind == ErrorKind.RETRYABLE
    assert "stream ended before its final event" in error.message


def test_stream_without_done_is_retryable(server):
    server.reply(Reply(chunks=STREAM[:-1], content_type=SSE))
    error = fails(anfrage(server.url))
    assert error.kind == ErrorKind.RETRYABLE
    assert "stream ended before its final event" in error.message


def test_server_error_inside_the_stream_is_retryable(server):
    broken = sse(
        None, error_body("The server had an error processing your request.", "server_error")
    )
    server.reply(Reply(chunks=[chunk({"content": "Hel"}), broken], content_type=SSE))
    error = fails(anfrage(server.url))
    assert error.kind == ErrorKind.RETRYABLE
    assert "The server had an error processing your request." in error.message


def test_validation_error_inside_a_200_stream_is_an_invalid_request(server):
    # llama.cpp reports some request errors this way (ggml-org/llama.cpp#14566).
    broken = sse(
        None,
        {"error": {"code": 400, "message": "Invalid 'tools'", "type": "invalid_request_error"}},
    )
    server.reply(Reply(chunks=[broken], content_type=SSE))
    error = fails(anfrage(server.url, gear=LOCAL))
    assert (error.kind, error.status) == (ErrorKind.INVALID_REQUEST, 400)


def test_context_error_inside_the_stream_is_context_too_long(server):
    body = error_body(
        "maximum context length exceeded", "invalid_request_error", "context_length_exceeded"
    )
    server.reply(Reply(chunks=[sse(None, body)], content_type=SSE))
    assert fails(anfrage(server.url)).kind == ErrorKind.CONTEXT_TOO_LONG


def test_slow_first_byte_times_out_as_retryable(server):
    server.reply(Reply(chunks=STREAM, content_type=SSE, delay_first_byte_s=1.0))
    started = time.perf_counter()
    error = fails(anfrage(server.url, read_timeout_s=0.2))
    assert error.kind == ErrorKind.RETRYABLE
    assert "timeout" in error.message
    assert time.perf_counter() - started < 0.8  # it did not wait for the byte


def test_server_not_running_is_retryable():
    error = fails(anfrage(unused_url()))
    assert error.kind == ErrorKind.RETRYABLE
    assert "connection failed" in error.message


def test_cancelling_the_call_propagates(server):
    server.reply(Reply(chunks=STREAM, content_type=SSE, delay_between_s=0.3))

    async def cancel_after_first_delta() -> None:
        first = asyncio.Event()
        request = anfrage(server.url)
        task = asyncio.create_task(openai_compat.call(request, lambda k, t: first.set()))
        await asyncio.wait_for(first.wait(), 2)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancel_after_first_delta())


def test_models_lists_the_served_ids_with_the_key_in_the_header(server):
    listing = {
        "object": "list",
        "data": [
            {"id": "gpt-6.1-terra", "object": "model", "created": 1686935002, "owned_by": "openai"},
            {"id": "Qwen/Qwen3-8B", "object": "model", "owned_by": "vllm", "max_model_len": 32768},
        ],
    }
    server.reply(Reply(200, listing))
    provider = anfrage(server.url).provider
    assert asyncio.run(openai_compat.models(provider)) == ["gpt-6.1-terra", "Qwen/Qwen3-8B"]
    seen = server.seen[0]
    assert (seen.method, seen.path) == ("GET", "/v1/models")
    assert seen.headers["authorization"] == f"Bearer {KEY}"


def test_models_with_a_wrong_key_is_a_credentials_error(server):
    server.reply(Reply(401, error_body("Incorrect API key provided", "invalid_request_error")))
    provider = anfrage(server.url).provider
    with pytest.raises(MotorError) as caught:
        asyncio.run(openai_compat.models(provider))
    assert caught.value.kind == ErrorKind.CREDENTIALS


def test_error_written_into_the_stream_without_data_framing_is_read(server):
    stray = json.dumps(error_body("model is loading", "server_error")) + "\n\n"
    server.reply(Reply(chunks=[chunk({"content": "Hel"}), stray], content_type=SSE))
    error = fails(anfrage(server.url))
    assert error.kind == ErrorKind.RETRYABLE
    assert "model is loading" in error.message
