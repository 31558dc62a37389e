"""Google Gemini API: ``streamGenerateContent?alt=sse``, the key in ``x-goog-api-key``.

Every ``data:`` line is a whole GenerateContentResponse; there are no event names and no
``[DONE]``: the last chunk carries ``finishReason`` and the final ``usageMetadata``.
"""

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

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"

# Gas speaks low/medium/high; anything else is pulled to the nearest level Gemini takes.
THINKING_LEVELS = {
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}
# HTTP code of each google.rpc status, for errors that arrive inside a 200 stream.
STATUS_CODES = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def available() -> str:
    return ""


def _base_url(provider: ProviderConfig) -> str:
    return (provider.base_url or DEFAULT_BASE_URL).rstrip("/")


def _headers(provider: ProviderConfig) -> dict[str, str]:
    return {"x-goog-api-key": provider.api_key, "content-type": "application/json"}


def thinking_config(anfrage: Anfrage) -> dict | None:
    """A budget for budget gears (0 puts the brake on), a level for effort gears; never both."""
    gas, reasoning = anfrage.gas, anfrage.gear.reasoning
    if reasoning == "budget":
        budget = gas.thinking_budget or 0
        config: dict = {"thinkingBudget": budget}
        if budget:
            config["includeThoughts"] = True
        return config
    if reasoning == "effort" and gas.effort:
        return {"thinkingLevel": THINKING_LEVELS.get(gas.effort, "medium"), "includeThoughts": True}
    return None


def request_body(anfrage: Anfrage) -> dict:
    config: dict = {"maxOutputTokens": anfrage.gas.max_output_tokens}
    thinking = thinking_config(anfrage)
    if thinking is not None:
        config["thinkingConfig"] = thinking
    body: dict = {
        "contents": [
            {
                "role": "model" if m["role"] == "assistant" else "user",
                "parts": [{"text": m["content"]}],
            }
            for m in anfrage.messages
        ],
        "generationConfig": config,
    }
    if anfrage.system:
        body["systemInstruction"] = {"parts": [{"text": anfrage.system}]}
    return body


def _seconds(duration: object) -> float | None:
    """A google.protobuf.Duration in JSON ("17s", "57.238747106s") as seconds."""
    if not isinstance(duration, str) or not duration.endswith("s"):
        return None
    try:
        return max(0.0, float(duration[:-1]))
    except ValueError:
        return None


def _classify(
    err: dict, where: str, status: int | None = None, headers: httpx.Headers | None = None
) -> MotorError:
    """The kind of a Gemini error object ``{"code", "message", "status", "details"}``."""
    name = str(err.get("status") or "")
    message = str(err.get("message") or name or "unknown error")[:500]
    code = status or (err.get("code") if isinstance(err.get("code"), int) else None)
    code = code or STATUS_CODES.get(name, 500)
    details = [d for d in err.get("details") or [] if isinstance(d, dict)]
    reasons = {str(d.get("reason") or "") for d in details}
    text = f"{where}: {name + ': ' if name else ''}{message}"
    # A bad key is a 400 here, not a 401; a region or billing precondition is no better.
    bad_key = any(r.startswith("API_KEY_") for r in reasons) or "api key" in message.lower()
    if (bad_key and code in (400, 401, 403)) or name == "FAILED_PRECONDITION":
        return MotorError(ErrorKind.CREDENTIALS, text, status=code)
    kind = http.error_for_status(code, message).kind
    after = None
    if kind == ErrorKind.RETRYABLE:
        after = http.retry_after(headers) if headers is not None else None
        if after is None:
            delays = [_seconds(d.get("retryDelay")) for d in details if "retryDelay" in d]
            after = next((d for d in delays if d is not None), None)
    return MotorError(kind, text, status=code, retry_after=after)


def _error_object(data: object) -> dict | None:
    if isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return data["error"]
    return None


async def _http_error(response: httpx.Response, provider: ProviderConfig) -> MotorError:
    body = await response.aread()
    status = response.status_code
    where = f"{provider.name} answered {status}"
    err = _error_object(http.json_or_none(body))
    if err is None:
        err = {"message": http.error_message(body)}
    return _classify(err, where, status, response.headers)


class _Stream:
    def __init__(self, on_delta: DeltaHandler | None, uhr: Stoppuhr) -> None:
        self.on_delta, self.uhr = on_delta, uhr
        self.text: list[str] = []
        self.thinking: list[str] = []
        self.usage: dict = {}
        self.finish_reason = ""
        self.response_id = self.model_version = ""

    def feed(self, chunk: dict, provider: str) -> None:
        err = _error_object(chunk)
        if err is not None:
            raise _classify(err, f"{provider} stream error")
        self.usage = chunk.get("usageMetadata") or self.usage
        self.response_id = chunk.get("responseId") or self.response_id
        self.model_version = chunk.get("modelVersion") or self.model_version
        candidates = chunk.get("candidates") or []
        if not candidates:
            blocked = (chunk.get("promptFeedback") or {}).get("blockReason")
            if blocked:
                raise MotorError(
                    ErrorKind.INVALID_REQUEST, f"{provider} blocked the prompt: {blocked}"
                )
            return
        candidate = candidates[0]
        for part in (candidate.get("content") or {}).get("parts") or []:
            piece = part.get("text")
            if not piece:
                continue
            kind = "thinking" if part.get("thought") else "text"
            self.uhr.tick()
            (self.thinking if kind == "thinking" else self.text).append(piece)
            if self.on_delta:
                self.on_delta(kind, piece)
        self.finish_reason = candidate.get("finishReason") or self.finish_reason

    def normalised_usage(self) -> Usage:
        u = self.usage
        return Usage(
            input_tokens=int(u.get("promptTokenCount") or 0),
            output_tokens=int(u.get("candidatesTokenCount") or 0),
            cached_tokens=int(u.get("cachedContentTokenCount") or 0),
            thinking_tokens=int(u.get("thoughtsTokenCount") or 0),
        )


def _unframed(text: str, provider: str) -> MotorError:
    """JSON written into the stream without ``data:``: an error if it says so, else garbage."""
    err = _error_object(http.json_or_none(text))
    if err is not None:
        return _classify(err, f"{provider} stream error")
    return MotorError(
        ErrorKind.RETRYABLE, f"{provider}: malformed data in the stream: {text[:200]!r}"
    )


async def call(anfrage: Anfrage, on_delta: DeltaHandler | None = None) -> Antwort:
    provider = anfrage.provider
    if provider is None:
        raise MotorError(ErrorKind.UNAVAILABLE, "no provider settings for the Gemini call")
    uhr = Stoppuhr()
    stream = _Stream(on_delta, uhr)
    model = anfrage.gear.model_id.removeprefix("models/")
    read_s = min(provider.read_timeout_s, anfrage.gas.timeout_s)
    try:
        async with http.client(provider).stream(
            "POST",
            f"{_base_url(provider)}/v1beta/models/{model}:streamGenerateContent",
            params={"alt": "sse"},
            headers=_headers(provider),
            json=request_body(anfrage),
            timeout=http.timeout(provider, read_s),
        ) as response:
            if response.status_code != 200:
                raise await _http_error(response, provider)
            try:
                async for event, data in http.sse_events(response, unframed=True):
                    if event == "unframed":
                        raise _unframed(data, provider.name)
                    stream.feed(http.parse_json(data, provider.name), provider.name)
            except httpx.HTTPError as exc:
                raise http.stream_error(exc, provider.name) from None
    except httpx.HTTPError as exc:
        raise http.transport_error(exc, provider.name) from None
    if not stream.finish_reason:
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
        stop_reason=stream.finish_reason,
        extra={"response_id": stream.response_id, "model_version": stream.model_version},
    )


async def models(provider: ProviderConfig) -> list[str]:
    """Model names the key can use (``GET /v1beta/models``, every page), without "models/"."""
    names: list[str] = []
    params: dict[str, str | int] = {"pageSize": 1000}
    try:
        for _ in range(50):  # a page cap, in case a server repeats its token
            response = await http.client(provider).get(
                f"{_base_url(provider)}/v1beta/models",
                headers=_headers(provider),
                params=params,
                timeout=http.timeout(provider),
            )
            if response.status_code != 200:
                raise await _http_error(response, provider)
            data = http.json_or_none(response.content)
            if not isinstance(data, dict):
                raise MotorError(ErrorKind.RETRYABLE, f"{provider.name}: malformed model list")
            names.extend(
                str(m["name"]).removeprefix("models/")
                for m in data.get("models") or []
                if m.get("name")
            )
            token = data.get("nextPageToken")
            if not token:
                break
            params = {"pageSize": 1000, "pageToken": token}
    except httpx.HTTPError as exc:
        raise http.transport_error(exc, provider.name) from None
    return names
