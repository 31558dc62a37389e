"""What the HTTP providers share: a pooled httpx client per event loop, status → error kind,
Retry-After, and line framing for SSE and NDJSON streams."""

import asyncio
import email.utils
import json
import time
from collections.abc import AsyncIterator

import httpx

from garage.motorblock.base import ErrorKind, MotorError, ProviderConfig

_clients: dict[tuple[int, str], httpx.AsyncClient] = {}


def client(provider: ProviderConfig) -> httpx.AsyncClient:
    """One pooled client per (event loop, provider): connections are reused across calls."""
    loop = asyncio.get_running_loop()
    key = (id(loop), provider.name)
    found = _clients.get(key)
    if found is None or found.is_closed:
        limits = httpx.Limits(
            max_connections=max(provider.max_concurrency, 1) * 4,
            max_keepalive_connections=max(provider.max_concurrency, 1) * 4,
        )
        found = httpx.AsyncClient(limits=limits, http2=False, follow_redirects=False)
        _clients[key] = found
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
    """Seconds from a Retry-After header (delta seconds or an HTTP date), or None."""
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


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event name, data) pairs of a server-sent event stream."""
    event, data = "", []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:
        yield event or "message", "\n".join(data)


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
