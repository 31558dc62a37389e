"""The Ollama driver against a local server speaking Ollama's NDJSON chat stream."""

import asyncio
import json
import time
from decimal import Decimal

import pytest

from garage.engine.gas import gas_geben
from garage.engine.types import GearSpec
from garage.motorblock import ollama
from garage.motorblock.base import Anfrage, ErrorKind, MotorError, ProviderConfig
from tests.motorblock.fakeserver import Reply, unused_url

NDJSON = "application/x-ndjson"
SYSTEM = "Answer directly and briefly."

QWEN = GearSpec(
    name="ollama-qwen",
    provider="ollama",
    provider_kind="ollama",
    model_id="qwen3.5:4b",
    tier=1,
    context_window=262144,
    max_output_tokens=32768,
    reasoning="think",
)
LLAMA = GearSpec(
    name="ollama-llama",
    provider="ollama",
    provider_kind="ollama",
    model_id="llama3.2:3b",
    tier=2,
    context_window=131072,
    max_output_tokens=8192,
)


def line(data: dict) -> str:
    return json.dumps(data) + "\n"


def chunk(*, content: str = "", thinking: str = "") -> str:
    message = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    return line(
        {
            "model": "qwen3.5:4b",
            "created_at": "2025-10-26T17:15:24.097767Z",
            "message": message,
            "done": False,
        }
    )


def final(prompt_eval_count: int = 169, eval_count: int = 15, done_reason: str = "stop") -> str:
    return line(
        {
            "model": "qwen3.5:4b",
            "created_at": "2025-07-07T20:22:19.19314Z",
            "message": {"role": "assistant", "content": ""},
            "done_reason": done_reason,
            "done": True,
            "total_duration": 182242375,
            "load_duration": 41295167,
            "prompt_eval_count": prompt_eval_count,
            "prompt_eval_duration": 24573166,
            "eval_count": eval_count,
            "eval_duration": 115959084,
        }
    )


STREAM = [
    chunk(thinking="Okay, the user"),
    chunk(thinking=" greets me."),
    chunk(content="Hello"),
    chunk(content=" there!"),
    final(),
]


def anfrage(
    url: str,
    *,
    gear: GearSpec = QWEN,
    throttle: float = 0.6,
    read_timeout_s: float = 5.0,
    api_key: str = "",
    prompt: str = "Say hello.",
) -> Anfrage:
    return Anfrage(
        gear=gear,
        messages=({"role": "user", "content": prompt},),
        gas=gas_geben(gear, throttle),
        system=SYSTEM,
        provider=ProviderConfig(
            name="ollama",
            kind="ollama",
            base_url=url,
            api_key=api_key,
            connect_timeout_s=1.0,
            read_timeout_s=read_timeout_s,
        ),
    )


def run(request: Anfrage, deltas: list | None = None):
    on_delta = (lambda kind, text: deltas.append((kind, text))) if deltas is not None else None
    return asyncio.run(ollama.call(request, on_delta))


def fails(request: Anfrage) -> MotorError:
    with pytest.raises(MotorError) as caught:
        run(request)
    return caught.value


def test_full_stream_gives_text_thinking_usage_and_timings(server):
    server.reply(Reply(chunks=STREAM, content_type=NDJSON))
    deltas = []
    antwort = run(anfrage(server.url), deltas)
    assert deltas == [
        ("thinking", "Okay, the user"),
        ("thinking", " greets me."),
        ("text", "Hello"),
        ("text", " there!"),
    ]
    assert antwort.text == "Hello there!"
    assert antwort.thinking == "Okay, the user greets me."
    # eval_count includes thinking and Ollama gives no breakdown.
    assert antwort.usage.as_dict() == {
        "input_tokens": 169,
        "output_tokens": 15,
        "cached_tokens": 0,
        "thinking_tokens": 0,
    }
    assert antwort.cost_usd == 0
    assert antwort.stop_reason == "stop"
    assert antwort.ttft_ms is not None
    assert 0 <= antwort.ttft_ms <= antwort.latency_ms
    assert antwort.extra == {"total_duration_ms": 182, "load_duration_ms": 41}


def test_a_priced_gear_is_billed_from_the_final_counts(server):
    priced = GearSpec(
        name="ollama-cloud",
        provider="ollama",
        provider_kind="ollama",
        model_id="gpt-oss:120b-cloud",
        tier=3,
        input_price=Decimal("1.00"),
        output_price=Decimal("4.00"),
    )
    server.reply(Reply(chunks=[chunk(content="Hi"), final(1000, 500)], content_type=NDJSON))
    antwort = run(anfrage(server.url, gear=priced))
    assert antwort.cost_usd == Decimal("0.003")


def test_missing_prompt_eval_count_counts_as_zero(server):
    cached = json.loads(final())
    del cached["prompt_eval_count"]
    server.reply(Reply(chunks=[chunk(content="Hi"), line(cached)], content_type=NDJSON))
    assert run(anfrage(server.url)).usage.input_tokens == 0


def test_request_carries_model_system_first_stream_and_caps(server):
    server.reply(Reply(chunks=STREAM, content_type=NDJSON))
    request = anfrage(server.url, throttle=0.6)
    run(request)
    seen = server.seen[0]
    assert (seen.method, seen.path, seen.query) == ("POST", "/api/chat", {})
    assert "authorization" not in seen.headers
    body = seen.body
    assert body["model"] == "qwen3.5:4b"
    assert body["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Say hello."},
    ]
    assert body["stream"] is True
    assert body["think"] is True
    assert body["options"]["num_predict"] == request.gas.max_output_tokens


def test_brake_turns_thinking_off(server):
    server.reply(Reply(chunks=STREAM, content_type=NDJSON))
    run(anfrage(server.url, throttle=0.1))
    assert server.seen[0].body["think"] is False


def test_gear_without_reasoning_sends_no_think_field(server):
    server.reply(Reply(chunks=[chunk(content="Hi"), final()], content_type=NDJSON))
    run(anfrage(server.url, gear=LLAMA, throttle=0.9))
    assert "think" not in server.seen[0].body


def test_effort_gear_sends_its_level_as_think(server):
    levels = GearSpec(
        name="ollama-gpt-oss",
        provider="ollama",
        provider_kind="ollama",
        model_id="gpt-oss:20b",
        tier=2,
        reasoning="effort",
    )
    server.reply(Reply(chunks=[chunk(content="Hi"), final()], content_type=NDJSON))
    run(anfrage(server.url, gear=levels, throttle=0.9))
    assert server.seen[0].body["think"] == "high"


def test_context_window_covers_prompt_and_answer_within_the_gears_window():
    small = anfrage("", gear=LLAMA, throttle=0.0)  # 1024 answer tokens
    assert ollama.context_size(small) == 4096
    long_prompt = anfrage("", gear=LLAMA, throttle=0.0, prompt="x" * 30_000)
    assert ollama.context_size(long_prompt) == 16384  # 10,000 prompt + 1,024 answer tokens
    huge = anfrage("", gear=LLAMA, throttle=0.0, prompt="x" * 1_000_000)
    assert ollama.context_size(huge) == LLAMA.context_window


def test_cloud_key_goes_in_the_bearer_header_not_the_url(server):
    server.reply(Reply(chunks=STREAM, content_type=NDJSON))
    run(anfrage(server.url, api_key="ollama-secret-key"))
    seen = server.seen[0]
    assert seen.headers["authorization"] == "Bearer ollama-secret-key"
    assert "ollama-secret-key" not in seen.path + json.dumps(seen.query)


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ("", "http://localhost:11434"),
        ("127.0.0.1:11434", "http://127.0.0.1:11434"),
        ("0.0.0.0", "http://0.0.0.0:11434"),  # noqa: S104 (a common OLLAMA_HOST value)
        (":8080", "http://127.0.0.1:8080"),
        ("[::1]:11434", "http://[::1]:11434"),
        ("http://gpu-box:11434/", "http://gpu-box:11434"),
        ("https://ollama.example.com/proxy", "https://ollama.example.com/proxy"),
    ],
)
def test_ollama_host_without_scheme_gets_http_and_the_default_port(configured, expected):
    assert ollama.base_url(ProviderConfig(name="ollama", kind="ollama", base_url=configured)) == (
        expected
    )


def test_a_bare_host_and_port_reaches_the_server(server):
    server.reply(Reply(chunks=STREAM, content_type=NDJSON))
    assert run(anfrage(server.url.removeprefix("http://"))).text == "Hello there!"


def test_model_not_pulled_is_an_invalid_request_with_ollamas_hint(server):
    message = 'model "qwen3.5:4b" not found, try pulling it first'
    server.reply(Reply(404, {"error": message}))
    error = fails(anfrage(server.url))
    assert error.kind == ErrorKind.INVALID_REQUEST
    assert error.status == 404
    assert message in error.message


def test_think_on_a_model_without_thinking_is_an_invalid_request(server):
    server.reply(Reply(400, {"error": '"llama3.2:3b" does not support thinking'}))
    error = fails(anfrage(server.url))
    assert error.kind == ErrorKind.INVALID_REQUEST
    assert "does not support thinking" in error.message


def test_prompt_beyond_the_context_is_context_too_long(server):
    server.reply(Reply(400, {"error": "the input length exceeds the context length"}))
    assert fails(anfrage(server.url)).kind == ErrorKind.CONTEXT_TOO_LONG


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_cloud_key_is_a_credentials_error(server, status):
    server.reply(Reply(status, {"error": "unauthorized"}))
    error = fails(anfrage(server.url, api_key="ollama-secret-key"))
    assert (error.kind, error.status) == (ErrorKind.CREDENTIALS, status)
    assert "ollama-secret-key" not in error.message


def test_rate_limit_is_retryable_after_the_servers_delay(server):
    server.reply(Reply(429, {"error": "too many requests"}, headers={"retry-after": "7"}))
    error = fails(anfrage(server.url))
    assert (error.kind, error.status, error.retry_after) == (ErrorKind.RETRYABLE, 429, 7.0)


@pytest.mark.parametrize(
    ("status", "message"),
    [(500, "llama runner process has terminated"), (503, "server busy, please try again")],
)
def test_server_errors_and_a_full_queue_are_retryable(server, status, message):
    server.reply(Reply(status, {"error": message}))
    error = fails(anfrage(server.url))
    assert (error.kind, error.status) == (ErrorKind.RETRYABLE, status)
    assert message in error.message


def test_malformed_json_line_is_retryable(server):
    server.reply(
        Reply(chunks=[chunk(content="Hel"), '{"model": "qwen3.5:4b", "mess\n'], content_type=NDJSON)
    )
    error = fails(anfrage(server.url))
    assert error.kind == ErrorKind.RETRYABLE
    assert "malformed" in error.message


def test_connection_cut_mid_stream_is_retryable(server):
    server.reply(Reply(chunks=STREAM, content_type=NDJSON, cut_after=2))
    deltas = []
    with pytest.raises(MotorError) as caught:
        run(anfrage(server.url), deltas)
    assert caught.value.kind == ErrorKind.RETRYABLE
    assert deltas == [("thinking", "Okay, the user"), ("thinking", " greets me.")]


def test_stream_without_its_done_line_is_retryable(server):
    server.reply(Reply(chunks=STREAM[:-1], content_type=NDJSON))
    error = fails(anfrage(server.url))
    assert error.kind == ErrorKind.RETRYABLE
    assert "stream ended before its final event" in error.message


def test_error_line_mid_stream_is_retryable(server):
    broken = line({"error": "an error was encountered while running the model"})
    server.reply(Reply(chunks=[chunk(content="I"), broken], content_type=NDJSON))
    error = fails(anfrage(server.url))
    assert error.kind == ErrorKind.RETRYABLE
    assert "an error was encountered while running the model" in error.message


def test_model_missing_mid_stream_is_an_invalid_request(server):
    broken = line({"error": "model 'qwen3.5:4b' not found, try pulling it first"})
    server.reply(Reply(chunks=[broken], content_type=NDJSON))
    assert fails(anfrage(server.url)).kind == ErrorKind.INVALID_REQUEST


def test_slow_first_byte_times_out_as_retryable(server):
    server.reply(Reply(chunks=STREAM, content_type=NDJSON, delay_first_byte_s=1.0))
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
    server.reply(Reply(chunks=STREAM, content_type=NDJSON, delay_between_s=0.3))

    async def cancel_after_first_delta() -> None:
        first = asyncio.Event()
        task = asyncio.create_task(ollama.call(anfrage(server.url), lambda k, t: first.set()))
        await asyncio.wait_for(first.wait(), 2)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancel_after_first_delta())


def test_models_lists_the_pulled_models(server):
    tags = {
        "models": [
            {
                "name": "llama3.2:3b",
                "model": "llama3.2:3b",
                "modified_at": "2025-05-04T17:37:44.706015396-07:00",
                "size": 2019393189,
                "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
                "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B"},
            },
            {"name": "qwen3.5:4b", "model": "qwen3.5:4b"},
        ]
    }
    server.reply(Reply(200, tags))
    provider = anfrage(server.url).provider
    assert asyncio.run(ollama.models(provider)) == ["llama3.2:3b", "qwen3.5:4b"]
    assert (server.seen[0].method, server.seen[0].path) == ("GET", "/api/tags")


def test_models_on_a_dead_server_is_retryable():
    provider = anfrage(unused_url()).provider
    with pytest.raises(MotorError) as caught:
        asyncio.run(ollama.models(provider))
    assert caught.value.kind == ErrorKind.RETRYABLE
