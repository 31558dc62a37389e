"""What the HTTP providers share: a pooled httpx client per event loop, status → error kind,
Retry-After, and line framing for SSE and NDJSON streams."""

import asyncio
import email.utils
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from garage.motorblock.base import ErrorKind, MotorError, ProviderConfig

_clients: dict[tuple[int, str], tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]] = {}


def client(provider: ProviderConfig) -> httpx.AsyncClient:
    """One pooled client per (event loop, provider): connections are reused across calls."""
    loop = asyncio.get_running_loop()
    for key, (owner, _) in list(_clients.items()):
        if owner.is_closed():
            # async_to_sync runs every trip on a new loop; a client left from an ended loop
            # is dropped so its pooled sockets are collected instead of piling up.
            _clients.pop(key, None)
    key = (id(loop), provider.name)
    owner, found = _clients.get(key, (None, None))
    if found is None or owner is not loop or found.is_closed:
        limits = httpx.Limits(
            max_connections=max(provider.max_concurrency, 1) * 4,
            max_keepalive_connections=max(provider.max_concurrency, 1) * 4,
        )
        found = httpx.AsyncClient(limits=limits, http2=False, follow_redirects=False)
        _clients[key] = (loop, found)
    return found


def timeout(provider: ProviderConfig, read_s: float | None = None) -> httpx.Timeout:
    read = read_s if read_s is not None else provider.read_timeout_s
    return httpx.Timeout(
        connect=provider.connect_timeout_s,
        read=read,
        write=provider.connect_timeout_s,
        pool=provider.connect_timeout_s,
    )


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date), or None.

    OpenAI also sends ``retry-after-ms``, the more precise of the two when present."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parsed = email.utils.parsedate_to_datetime(value) if value else None
    if parsed is None:
        return None
    return max(0.0, parsed.timestamp() - time.time())


CONTEXT_PHRASES = (
    "prompt is too long",
    "context length",
    "context_length_exceeded",
    "too many tokens",
    "maximum context",
    "input token count",
    "exceeds the context window",
    "exceed context limit",
    "context size",  # llama.cpp: "exceeds the available context size", "Context size has been exceeded"
)


def error_for_status(
    status: int, message: str, headers: httpx.Headers | None = None, provider: str = ""
) -> MotorError:
    """Sort an HTTP error into the kind the engine acts on."""
    where = f"{provider} answered {status}: " if provider else f"HTTP {status}: "
    text = where + message
    lowered = message.lower()
    after = retry_after(headers) if headers is not None else None
    if status in (401, 403):
        return MotorError(ErrorKind.CREDENTIALS, text, status=status)
    if status in (400, 413, 422) and any(p in lowered for p in CONTEXT_PHRASES):
        return MotorError(ErrorKind.CONTEXT_TOO_LONG, text, status=status)
    if status == 429 or status == 408 or status == 409 or status >= 500:
        return MotorError(ErrorKind.RETRYABLE, text, status=status, retry_after=after)
    if status == 404:
        return MotorError(ErrorKind.INVALID_REQUEST, text, status=status)
    return MotorError(ErrorKind.INVALID_REQUEST, text, status=status)


def transport_error(exc: Exception, provider: str) -> MotorError:
    """Timeouts and connection failures are retryable."""
    if isinstance(exc, httpx.TimeoutException):
        kind = type(exc).__name__.replace("Timeout", " timeout").strip().lower()
        return MotorError(
            ErrorKind.RETRYABLE, f"{provider}: {kind or 'timeout'} ({exc or 'no answer in time'})"
        )
    return MotorError(
        ErrorKind.RETRYABLE, f"{provider}: connection failed ({type(exc).__name__}: {exc})"
    )


def stream_error(exc: Exception, provider: str) -> MotorError:
    """A transport failure after the stream began: a timeout, or the stream cut short."""
    if isinstance(exc, httpx.TimeoutException):
        return transport_error(exc, provider)
    return MotorError(
        ErrorKind.RETRYABLE,
        f"{provider}: stream ended before its final event ({type(exc).__name__}: {exc})",
    )


def json_or_none(body: bytes | str) -> Any:
    """The decoded JSON of a body, or None when it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def error_message(body: bytes) -> str:
    """The human message out of a provider's JSON error body, whatever its shape."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body.decode("utf-8", "replace").strip()[:500] or "(empty body)"
    if isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("status") or err)[:500]
        if isinstance(err, str):
            return err[:500]
        if "message" in data:
            return str(data["message"])[:500]
    return str(data)[:500]


async def sse_events(
    response: httpx.Response, *, unframed: bool = False
) -> AsyncIterator[tuple[str, str]]:
    """(event name, data) pairs of a server-sent event stream.

    With ``unframed``, lines that are no SSE field (some servers write a JSON error into the
    stream without ``data:``) are gathered and yielded as ("unframed", text) at the next blank
    line or the end of the stream; otherwise they are ignored, as the SSE spec says.
    """
    event, data, raw = "", [], []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event or "message", "\n".join(data)
            if raw:
                yield "unframed", "\n".join(raw)
            event, data, raw = "", [], []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif unframed and name not in ("id", "retry"):
            raw.append(line)
    if data:
        yield event or "message", "\n".join(data)
    if raw:
        yield "unframed", "\n".join(raw)


async def ndjson_lines(response: httpx.Response) -> AsyncIterator[dict]:
    async for line in response.aiter_lines():
        if line.strip():
            try:
                yield json.loads(line)
            except ValueError:
                raise MotorError(
                    ErrorKind.RETRYABLE, f"malformed JSON line in the stream: {line[:200]!r}"
                ) from None


def parse_json(data: str, provider: str) -> dict:
    try:
        value = json.loads(data)
    except ValueError:
        raise MotorError(
            ErrorKind.RETRYABLE, f"{provider}: malformed JSON in the stream: {data[:200]!r}"
        ) from None
    if not isinstance(value, dict):
        raise MotorError(ErrorKind.RETRYABLE, f"{provider}: unexpected stream data: {data[:200]!r}")
    return value
