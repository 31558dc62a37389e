"""Ollama's native chat API: ``POST /api/chat``, an NDJSON stream, usage on the final line.

Thinking arrives in ``message.thinking`` before the answer in ``message.content``. Ollama
counts thinking inside ``eval_count`` and reports no breakdown, so ``output_tokens`` includes
it and ``thinking_tokens`` stays 0. Local gears cost nothing; the gear's prices still apply,
so a paid Ollama cloud gear is billed like any other.
"""

from urllib.parse import urlsplit

import httpx

from garage.motorblock import http
from garage.motorblock.base import (
    Anfrage,
    Antwort,
    DeltaHandler,
    ErrorKind,
    MotorError,
    ProviderConfig,
    Stoppuhr,
    Usage,
)

DEFAULT_BASE_URL = "http://localhost:11434"
DEFAULT_PORT = 11434
CONTEXT_FLOOR = 4096
NANOSECONDS_PER_MS = 1_000_000


def base_url(provider: ProviderConfig) -> str:
    """The server's root URL. OLLAMA_HOST may be a bare ``host[:port]`` such as
    ``127.0.0.1:11434`` or ``0.0.0.0``; like Ollama's own client, add http:// and port 11434."""
    value = provider.base_url.strip().rstrip("/")
    if not value:
        return DEFAULT_BASE_URL
    if "://" in value:
        return value
    try:
        parts = urlsplit(f"http://{value}")
        host, port = parts.hostname or "127.0.0.1", parts.port or DEFAULT_PORT
    except ValueError:
        raise MotorError(
            ErrorKind.UNAVAILABLE, f"{provider.name}: {value!r} is not a valid server address"
        ) from None
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    return f"http://{host}:{port}{parts.path.rstrip('/')}"


def context_size(anfrage: Anfrage) -> int:
    """``options.num_ctx`` for this call.

    Ollama's default window is as small as 4096 tokens on modest machines and it truncates
    silently beyond it, which would cut the prompt or a long thinking phase. So ask for room
    for the prompt (about 3 characters a token) plus the whole answer, rounded up to a power
    of two because Ollama reloads the model whenever ``num_ctx`` changes, and never more
    than the gear's window.
    """
    chars = len(anfrage.system) + sum(len(m["content"]) for m in anfrage.messages)
    need = chars // 3 + anfrage.gas.max_output_tokens + 256
    size = max(CONTEXT_FLOOR, 1 << (need - 1).bit_length())
    return min(size, anfrage.gear.context_window)


def request_body(anfrage: Anfrage) -> dict:
    messages = [{"role": "system", "content": anfrage.system}] if anfrage.system else []
    messages += [{"role": m["role"], "content": m["content"]} for m in anfrage.messages]
    body: dict = {
        "model": anfrage.gear.model_id,
        "messages": messages,
        "stream": True,
        "options": {
            "num_predict": anfrage.gas.max_output_tokens,
            "num_ctx": context_size(anfrage),
        },
    }
    gas, reasoning = anfrage.gas, anfrage.gear.reasoning
    if reasoning == "think" and gas.think is not None:
        body["think"] = gas.think
    elif reasoning == "effort" and gas.effort:
        body["think"] = gas.effort  # models with levels (gpt-oss) take "low" | "medium" | "high"
    return body


def _headers(provider: ProviderConfig) -> dict[str, str]:
    # Local servers need no key; Ollama's cloud takes a bearer key.
    return {"Authorization": f"Bearer {provider.api_key}"} if provider.api_key else {}


def _stream_error(message: str, provider: str) -> MotorError:
    """An ``{"error": ...}`` line in a stream that started with 200."""
    lowered = message.lower()
    text = f"{provider} reported an error in the stream: {message}"
    if "not found" in lowered:
        return MotorError(ErrorKind.INVALID_REQUEST, text)
    if any(phrase in lowered for phrase in http.CONTEXT_PHRASES):
        return MotorError(ErrorKind.CONTEXT_TOO_LONG, text)
    return MotorError(ErrorKind.RETRYABLE, text)


async def call(anfrage: Anfrage, on_delta: DeltaHandler | None = None) -> Antwort:
    provider = anfrage.provider
    uhr = Stoppuhr()
    read_s = min(provider.read_timeout_s, anfrage.gas.timeout_s)
    try:
        async with http.client(provider).stream(
            "POST",
            f"{base_url(provider)}/api/chat",
            json=request_body(anfrage),
            headers=_headers(provider),
            timeout=http.timeout(provider, read_s=read_s),
        ) as response:
            if response.status_code >= 400:
                body = await response.aread()
                raise http.error_for_status(
                    response.status_code, http.error_message(body), response.headers, provider.name
                )
            try:
                return await _read_stream(response, anfrage, on_delta, uhr)
            except httpx.HTTPError as exc:
                raise http.stream_error(exc, provider.name) from None
    except httpx.HTTPError as exc:
        raise http.transport_error(exc, provider.name) from None


async def _read_stream(
    response: httpx.Response, anfrage: Anfrage, on_delta: DeltaHandler | None, uhr: Stoppuhr
) -> Antwort:
    name = anfrage.provider.name
    text: list[str] = []
    thinking: list[str] = []
    final: dict | None = None
    async for line in http.ndjson_lines(response):
        if not isinstance(line, dict):
            raise MotorError(ErrorKind.RETRYABLE, f"{name}: unexpected stream line: {line!r:.200}")
        if "error" in line:
            raise _stream_error(str(line["error"]), name)
        message = line.get("message") or {}
        for kind, field, parts in (("thinking", "thinking", thinking), ("text", "content", text)):
            delta = message.get(field)
            if delta:
                uhr.tick()
                parts.append(delta)
                if on_delta:
                    on_delta(kind, delta)
        if line.get("done"):
            final = line
            break
    if final is None:
        raise MotorError(ErrorKind.RETRYABLE, f"{name}: stream ended before its final event")
    # prompt_eval_count is missing when the whole prompt came from Ollama's cache.
    usage = Usage(
        input_tokens=final.get("prompt_eval_count") or 0,
        output_tokens=final.get("eval_count") or 0,
    )
    return Antwort(
        text="".join(text),
        usage=usage,
        cost_usd=usage.cost_on(anfrage.gear),
        latency_ms=uhr.latency_ms,
        ttft_ms=uhr.ttft_ms,
        thinking="".join(thinking),
        stop_reason=final.get("done_reason") or "stop",
        extra={
            "total_duration_ms": (final.get("total_duration") or 0) // NANOSECONDS_PER_MS,
            "load_duration_ms": (final.get("load_duration") or 0) // NANOSECONDS_PER_MS,
        },
    )


async def models(provider: ProviderConfig) -> list[str]:
    """Names (``model:tag``) of the models pulled on the server, from ``GET /api/tags``."""
    try:
        response = await http.client(provider).get(
            f"{base_url(provider)}/api/tags",
            headers=_headers(provider),
            timeout=http.timeout(provider),
        )
    except httpx.HTTPError as exc:
        raise http.transport_error(exc, provider.name) from None
    if response.status_code >= 400:
        raise http.error_for_status(
            response.status_code,
            http.error_message(response.content),
            response.headers,
            provider.name,
        )
    data = http.parse_json(response.text, provider.name)
    found = [m for m in data.get("models") or [] if isinstance(m, dict)]
    return [name for name in (m.get("name") or m.get("model") for m in found) if name]
