"""OpenAI-compatible Chat Completions: OpenAI itself, vLLM, llama.cpp's server, LM Studio,
LiteLLM, Ollama's ``/v1``. ``POST {base_url}/chat/completions`` with an SSE stream of
``data: {chunk}`` lines that ends with ``data: [DONE]``.

The base URL already ends in ``/v1`` (``OPENAI_BASE_URL=http://localhost:8000/v1``), as for
OpenAI's own SDK. Reasoning text comes in ``delta.reasoning_content`` (DeepSeek, llama.cpp,
older vLLM) or ``delta.reasoning`` (newer vLLM, OpenRouter, Ollama); both are read.
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

DEFAULT_BASE_URL = "https://api.openai.com/v1"

# The HTTP status an error object inside a 200 stream stands for, by its type or code.
STREAM_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_exceeded": 429,
    "rate_limit_error": 429,
    "tokens": 429,
    "requests": 429,
    "overloaded_error": 503,
    "server_error": 500,
}


def base_url(provider: ProviderConfig) -> str:
    return provider.base_url.strip().rstrip("/") or DEFAULT_BASE_URL


def token_field(url: str) -> str:
    """Which name the output cap goes under.

    OpenAI's own API (and Azure OpenAI) rejects ``max_tokens`` for reasoning models and wants
    ``max_completion_tokens``. Local servers know ``max_tokens`` for sure, and several of them
    (llama.cpp before 2026, llamafile, llama-cpp-python) silently ignore
    ``max_completion_tokens`` and generate without a cap. So: the new name for OpenAI's hosts,
    the old one everywhere else, and ``call`` switches once if a server refuses the one sent.
    """
    host = (urlsplit(url).hostname or "").lower()
    if host == "api.openai.com" or host.endswith(".openai.azure.com"):
        return "max_completion_tokens"
    return "max_tokens"


def request_body(anfrage: Anfrage, cap_field: str) -> dict:
    messages = [{"role": "system", "content": anfrage.system}] if anfrage.system else []
    messages += [{"role": m["role"], "content": m["content"]} for m in anfrage.messages]
    body: dict = {
        "model": anfrage.gear.model_id,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        cap_field: anfrage.gas.max_output_tokens,
    }
    if anfrage.gear.reasoning == "effort" and anfrage.gas.effort:
        body["reasoning_effort"] = anfrage.gas.effort
    return body


def _headers(provider: ProviderConfig) -> dict[str, str]:
    # Local servers usually need no key, and some reject a bearer they were not told about.
    return {"Authorization": f"Bearer {provider.api_key}"} if provider.api_key else {}


def _error_object(body: bytes) -> dict | None:
    """The error object of a body: ``{"error": {...}}``, or flat (vLLM before Aug 2025)."""
    data = http.json_or_none(body)
    if not isinstance(data, dict):
        return None
    error = data.get("error", data)
    if isinstance(error, str):
        return {"message": error}
    return error if isinstance(error, dict) else None


def api_error(
    status: int | None,
    error: dict,
    provider: ProviderConfig,
    headers: httpx.Headers | None = None,
) -> MotorError:
    """Sort an OpenAI-style error object; ``status`` is None for one that came mid-stream."""
    code, kind = error.get("code"), str(error.get("type") or "")
    message = str(error.get("message") or kind or error)[:500]
    if provider.api_key:
        message = message.replace(provider.api_key, "[key]")
    if status is None:
        message += " (error in the stream)"
        if isinstance(code, int) and 400 <= code < 600:
            status = code  # llama.cpp sends validation errors this way with HTTP 200
        else:
            status = STREAM_ERROR_STATUS.get(str(code), STREAM_ERROR_STATUS.get(kind, 500))
    text = f"{provider.name} answered {status}: {message}"
    if (
        code == "context_length_exceeded"
        or kind == "exceed_context_size_error"
        # llama.cpp sent this as a 500 server_error before it had its own type.
        or "context size has been exceeded" in message.lower()
    ):
        return MotorError(ErrorKind.CONTEXT_TOO_LONG, text, status=status)
    if code == "insufficient_quota":
        # Billing, not load: waiting does not help, someone has to top up the account.
        return MotorError(ErrorKind.CREDENTIALS, text, status=status)
    return http.error_for_status(status, message, headers, provider.name)


def _stream_error(payload: dict, provider: ProviderConfig) -> MotorError:
    error = payload.get("error", payload)
    return api_error(None, error if isinstance(error, dict) else {"message": str(error)}, provider)


def _other_cap_field(sent: str, status: int, error: dict | None) -> str | None:
    """The other name for the output cap when the server refused the one we sent."""
    if status != 400 or error is None:
        return None
    message = str(error.get("message") or "")
    refused = error.get("param") == sent or (
        f"'{sent}'" in message and "unsupported" in message.lower()
    )
    if not refused:
        return None
    return "max_completion_tokens" if sent == "max_tokens" else "max_tokens"


async def call(anfrage: Anfrage, on_delta: DeltaHandler | None = None) -> Antwort:
    provider = anfrage.provider
    uhr = Stoppuhr()
    url = f"{base_url(provider)}/chat/completions"
    cap_field = token_field(url)
    read_s = min(provider.read_timeout_s, anfrage.gas.timeout_s)
    try:
        for attempt in range(2):
            async with http.client(provider).stream(
                "POST",
                url,
                json=request_body(anfrage, cap_field),
                headers=_headers(provider),
                timeout=http.timeout(provider, read_s=read_s),
            ) as response:
                if response.status_code < 400:
                    try:
                        return await _read_stream(response, anfrage, on_delta, uhr)
                    except httpx.HTTPError as exc:
                        raise http.stream_error(exc, provider.name) from None
                body = await response.aread()
                error = _error_object(body)
                other = _other_cap_field(cap_field, response.status_code, error)
                if other and attempt == 0:
                    cap_field = other
                    continue
                if error is None:
                    error = {"message": http.error_message(body)}
                raise api_error(response.status_code, error, provider, response.headers)
    except httpx.HTTPError as exc:
        raise http.transport_error(exc, provider.name) from None
    raise AssertionError("unreachable")


def _usage(reported: dict) -> Usage:
    prompt = reported.get("prompt_tokens") or 0
    completion = reported.get("completion_tokens") or 0
    cached = (reported.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (reported.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return Usage(
        input_tokens=prompt,
        output_tokens=max(completion - reasoning, 0),
        cached_tokens=cached,
        thinking_tokens=reasoning,
    )


async def _read_stream(
    response: httpx.Response, anfrage: Anfrage, on_delta: DeltaHandler | None, uhr: Stoppuhr
) -> Antwort:
    provider = anfrage.provider
    text: list[str] = []
    thinking: list[str] = []
    stop_reason, reported, done = "", None, False
    # unframed: some servers write a JSON error into the stream without "data:".
    async for event, data in http.sse_events(response, unframed=True):
        if event == "unframed":
            stray = http.json_or_none(data)
            if isinstance(stray, dict) and "error" in stray:
                raise _stream_error(stray, provider)
            continue
        if data.strip() == "[DONE]":
            done = True
            break
        chunk = http.parse_json(data, provider.name)
        if "error" in chunk or chunk.get("object") == "error":
            raise _stream_error(chunk, provider)
        choices = chunk.get("choices") or []  # the usage chunk has [] (some servers: null)
        if choices and isinstance(choices[0], dict):
            delta = choices[0].get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            for kind, piece, parts in (
                ("thinking", reasoning, thinking),
                ("text", delta.get("content"), text),
            ):
                if piece and isinstance(piece, str):
                    uhr.tick()
                    parts.append(piece)
                    if on_delta:
                        on_delta(kind, piece)
            stop_reason = choices[0].get("finish_reason") or stop_reason
        if chunk.get("usage"):
            reported = chunk["usage"]
    if not done:
        raise MotorError(
            ErrorKind.RETRYABLE, f"{provider.name}: stream ended before its final event"
        )
    extra = {}
    if reported is None:
        # A server without include_usage support: estimate (about 4 characters a token)
        # rather than record a free call, and say so.
        reported = {
            "prompt_tokens": (len(anfrage.system) + len(anfrage.prompt_text)) // 4 + 1,
            "completion_tokens": len("".join(text) + "".join(thinking)) // 4 + 1,
        }
        extra["usage_estimated"] = True
    usage = _usage(reported)
    return Antwort(
        text="".join(text),
        usage=usage,
        cost_usd=usage.cost_on(anfrage.gear),
        latency_ms=uhr.latency_ms,
        ttft_ms=uhr.ttft_ms,
        thinking="".join(thinking),
        stop_reason=stop_reason or "stop",
        extra=extra,
    )


async def models(provider: ProviderConfig) -> list[str]:
    """Ids of the models the server offers, from ``GET {base_url}/models``."""
    try:
        response = await http.client(provider).get(
            f"{base_url(provider)}/models",
            headers=_headers(provider),
            timeout=http.timeout(provider),
        )
    except httpx.HTTPError as exc:
        raise http.transport_error(exc, provider.name) from None
    if response.status_code >= 400:
        error = _error_object(response.content) or {"message": http.error_message(response.content)}
        raise api_error(response.status_code, error, provider, response.headers)
    data = http.parse_json(response.text, provider.name)
    found = [m for m in data.get("data") or [] if isinstance(m, dict)]
    return [str(m["id"]) for m in found if m.get("id")]
