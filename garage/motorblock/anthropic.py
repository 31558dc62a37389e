"""Anthropic Messages API: ``POST /v1/messages`` answered with a server-sent event stream.

The stream is ``message_start``, content blocks (``content_block_start``, deltas,
``content_block_stop``), ``message_delta`` with the stop reason and cumulative usage, then
``message_stop``; ``ping`` may come anywhere and ``error`` in place of the rest.
"""

import httpx

from garage.engine.gas import THINKING_BUDGET_MIN
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

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"

# The status each error type stands for, to classify an ``error`` event inside a 200 stream.
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
# An account out of credit answers 400 invalid_request_error; no retry or rewording helps, but
# another provider can still take the call, so it counts as misconfigured credentials.
BILLING_PHRASES = ("credit balance is too low",)


def available() -> str:
    return ""


def _base_url(provider: ProviderConfig) -> str:
    return (provider.base_url or DEFAULT_BASE_URL).rstrip("/")


def _headers(provider: ProviderConfig) -> dict[str, str]:
    return {
        "x-api-key": provider.api_key,
        "anthropic-version": API_VERSION,
        "content-type": "application/json",
        "accept": "text/event-stream",
    }


def request_body(anfrage: Anfrage) -> dict:
    """The Messages request for ``anfrage``, its reasoning fields set as the gear takes them."""
    gas, gear = anfrage.gas, anfrage.gear
    body: dict = {
        "model": gear.model_id,
        "max_tokens": gas.max_output_tokens,
        "messages": [{"role": m["role"], "content": m["content"]} for m in anfrage.messages],
        "stream": True,
    }
    if anfrage.system:
        body["system"] = anfrage.system
    if gear.reasoning == "budget" and gas.thinking_budget:
        # budget_tokens is spent inside max_tokens and must stay below it.
        budget = min(gas.thinking_budget, gas.max_output_tokens - 1)
        if budget >= THINKING_BUDGET_MIN:
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    elif gear.reasoning == "effort" and gas.effort:
        body["thinking"] = {"type": "adaptive"}
        body["output_config"] = {"effort": gas.effort}
    return body


def _classify(status: int, etype: str, message: str, where: str) -> MotorError:
    """One error kind for an error body or event; ``where`` says which (status or stream)."""
    text = f"{etype}: {message}" if etype else message
    if any(p in message.lower() for p in BILLING_PHRASES) or etype == "billing_error":
        return MotorError(ErrorKind.CREDENTIALS, f"{where}: {text}", status=status)
    found = http.error_for_status(status, text)
    return MotorError(found.kind, f"{where}: {text}", status=status)


def _error_details(body: bytes) -> tuple[str, str]:
    """(error type, message) of an error body; the type is empty when the body is not JSON."""
    data = http.json_or_none(body)
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        return str(err.get("type") or ""), str(err.get("message") or "")[:500]
    return "", http.error_message(body)


async def _http_error(response: httpx.Response, provider: ProviderConfig) -> MotorError:
    body = await response.aread()
    etype, message = _error_details(body)
    status = response.status_code
    error = _classify(status, etype, message, f"{provider.name} answered {status}")
    # Anthropic sends retry-after on rate limits. A 429 without it is usually a spend cap that
    # waiting will not lift; it stays retryable so the engine fails over after its retries.
    error.retry_after = http.retry_after(response.headers) if error.retryable else None
    return error


class _Stream:
    """What the events have said so far."""

    def __init__(self, on_delta: DeltaHandler | None, uhr: Stoppuhr) -> None:
        self.on_delta, self.uhr = on_delta, uhr
        self.text: list[str] = []
        self.thinking: list[str] = []
        self.usage: dict = {}
        self.stop_reason = ""
        self.message_id = self.model = ""
        self.finished = False

    def _emit(self, kind: str, piece: str) -> None:
        if not piece:
            return
        self.uhr.tick()
        (self.text if kind == "text" else self.thinking).append(piece)
        if self.on_delta:
            self.on_delta(kind, piece)

    def feed(self, event: str, data: dict, provider: str) -> None:
        kind = data.get("type") or event
        if kind == "message_start":
            message = data.get("message") or {}
            self.message_id, self.model = message.get("id", ""), message.get("model", "")
            self.usage.update(message.get("usage") or {})
        elif kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "text":
                self._emit("text", block.get("text") or "")
            elif block.get("type") == "thinking":
                self._emit("thinking", block.get("thinking") or "")
        elif kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                self._emit("text", delta.get("text") or "")
            elif delta.get("type") == "thinking_delta":
                self._emit("thinking", delta.get("thinking") or "")
        elif kind == "message_delta":
            self.stop_reason = (data.get("delta") or {}).get("stop_reason") or self.stop_reason
            # Cumulative counts: the last value of each field wins.
            self.usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
        elif kind == "message_stop":
            self.finished = True
        elif kind == "error":
            err = data.get("error") or {}
            etype = str(err.get("type") or "")
            raise _classify(
                ERROR_STATUS.get(etype, 500),
                etype,
                str(err.get("message") or ""),
                f"{provider} stream error",
            )
        # ping, content_block_stop, signature deltas and new event types need nothing.

    def normalised_usage(self) -> Usage:
        u = self.usage
        output = int(u.get("output_tokens") or 0)
        thinking = int((u.get("output_tokens_details") or {}).get("thinking_tokens") or 0)
        cached = int(u.get("cache_read_input_tokens") or 0)
        return Usage(
            input_tokens=int(u.get("input_tokens") or 0)
            + int(u.get("cache_creation_input_tokens") or 0)
            + cached,
            output_tokens=max(output - thinking, 0),
            cached_tokens=cached,
            thinking_tokens=thinking,
        )


async def call(anfrage: Anfrage, on_delta: DeltaHandler | None = None) -> Antwort:
    provider = anfrage.provider
    if provider is None:
        raise MotorError(ErrorKind.UNAVAILABLE, "no provider settings for the Anthropic call")
    uhr = Stoppuhr()
    stream = _Stream(on_delta, uhr)
    read_s = min(provider.read_timeout_s, anfrage.gas.timeout_s)
    try:
        async with http.client(provider).stream(
            "POST",
            f"{_base_url(provider)}/v1/messages",
            headers=_headers(provider),
            json=request_body(anfrage),
            timeout=http.timeout(provider, read_s),
        ) as response:
            if response.status_code != 200:
                raise await _http_error(response, provider)
            try:
                async for event, data in http.sse_events(response):
                    if not stream.finished:  # read to the end so the connection can be reused
                        stream.feed(event, http.parse_json(data, provider.name), provider.name)
            except httpx.HTTPError as exc:
                raise http.stream_error(exc, provider.name) from None
    except httpx.HTTPError as exc:
        raise http.transport_error(exc, provider.name) from None
    if not stream.finished:
        raise MotorError(
            ErrorKind.RETRYABLE, f"{provider.name}: stream ended before its final event"
        )
    usage = stream.normalised_usage()
    return Antwort(
        text="".join(stream.text),
        usage=usage,
        cost_usd=usage.cost_on(anfrage.gear),
        latency_ms=uhr.latency_ms,
        ttft_ms=uhr.ttft_ms,
        thinking="".join(stream.thinking),
        stop_reason=stream.stop_reason,
        extra={
            "message_id": stream.message_id,
            "model": stream.model,
            "cache_creation_input_tokens": int(
                stream.usage.get("cache_creation_input_tokens") or 0
            ),
        },
    )


async def models(provider: ProviderConfig) -> list[str]:
    """The model ids the key can use (``GET /v1/models``, every page)."""
    ids: list[str] = []
    params: dict[str, str | int] = {"limit": 1000}
    headers = {k: v for k, v in _headers(provider).items() if k != "accept"}
    try:
        for _ in range(50):  # a page cap, in case a server repeats its cursor
            response = await http.client(provider).get(
                f"{_base_url(provider)}/v1/models",
                headers=headers,
                params=params,
                timeout=http.timeout(provider),
            )
            if response.status_code != 200:
                raise await _http_error(response, provider)
            data = http.json_or_none(response.content)
            if not isinstance(data, dict):
                raise MotorError(ErrorKind.RETRYABLE, f"{provider.name}: malformed model list")
            ids.extend(m["id"] for m in data.get("data") or [] if m.get("id"))
            if not data.get("has_more") or not data.get("last_id"):
                break
            params = {"limit": 1000, "after_id": data["last_id"]}
    except httpx.HTTPError as exc:
        raise http.transport_error(exc, provider.name) from None
    return ids
