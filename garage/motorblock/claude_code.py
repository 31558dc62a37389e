"""Claude Code: the ``claude`` CLI run headless as a subprocess, its stream-json read line by line.

``claude -p <prompt> --output-format stream-json --verbose --model <id> --max-turns <n>`` prints
one JSON object per line: a ``system`` init line, one ``assistant`` line per content block, and a
final ``result`` line with the summed usage and the cost the CLI computed itself. The CLI uses its
own login, so no key passes through here. Formats: docs/research/provider-wire-formats.md §5.
"""

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
from decimal import Decimal, InvalidOperation

from garage.motorblock.base import (
    Anfrage,
    Antwort,
    DeltaHandler,
    ErrorKind,
    MotorError,
    Stoppuhr,
    Usage,
)
from garage.motorblock.http import error_for_status

BIN_ENV = "CLAUDE_CODE_BIN"
MAX_TURNS_ENV = "CLAUDE_CODE_MAX_TURNS"
DEFAULT_MAX_TURNS = 3
NAME = "claude-code"
LINE_LIMIT = 16 * 1024 * 1024  # a result line carries the whole answer
STDERR_TAIL = 2000
# A single argv string may not pass 128 KiB on Linux, and a prompt that starts with "-" would
# be read as an option: such prompts go in on stdin, which the CLI takes as the prompt.
ARGV_PROMPT_MAX = 100_000
REAP_S = 5.0
EXIT_GRACE_S = 2.0  # after the result line, before the kill

# The `error` of the CLI's synthetic assistant line when an API call failed.
ERROR_KINDS = {
    "authentication_failed": ErrorKind.CREDENTIALS,
    "billing_error": ErrorKind.CREDENTIALS,
    "rate_limit": ErrorKind.RETRYABLE,
    "server_error": ErrorKind.RETRYABLE,
    "invalid_request": ErrorKind.INVALID_REQUEST,
}

SECRET_LIKE = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")
SECRET_ENV = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)


def binary() -> str:
    return os.environ.get(BIN_ENV, "").strip() or "claude"


def available() -> str:
    name = binary()
    if shutil.which(name):
        return ""
    return f"the Claude Code CLI {name!r} was not found: install it or set {BIN_ENV} to its path"


def max_turns() -> int:
    try:
        turns = int(os.environ.get(MAX_TURNS_ENV, ""))
    except ValueError:
        return DEFAULT_MAX_TURNS
    return turns if turns > 0 else DEFAULT_MAX_TURNS


def prompt_of(anfrage: Anfrage) -> str:
    """One prompt for ``-p``: a single message as it is, a conversation as a labelled transcript."""
    if len(anfrage.messages) == 1:
        return anfrage.messages[0]["content"]
    labels = {"user": "User", "assistant": "Assistant"}
    return "\n\n".join(
        f"{labels.get(m['role'], m['role'])}: {m['content']}" for m in anfrage.messages
    )


def command(anfrage: Anfrage) -> tuple[list[str], str | None]:
    """The argv, and the prompt to write to stdin when it cannot travel in argv."""
    prompt = prompt_of(anfrage)
    on_stdin = prompt.startswith("-") or len(prompt.encode()) > ARGV_PROMPT_MAX
    argv = [binary(), "-p"]
    if not on_stdin:
        argv.append(prompt)
    argv += ["--output-format", "stream-json", "--verbose", "--model", anfrage.gear.model_id]
    argv += ["--max-turns", str(max_turns())]
    if anfrage.system:
        argv += ["--append-system-prompt", anfrage.system]
    return argv, prompt if on_stdin else None


def redact(text: str) -> str:
    """Drop anything that looks like a key, and the values of secret-named variables."""
    for name, value in os.environ.items():
        if len(value) >= 8 and SECRET_ENV.search(name) and value in text:
            text = text.replace(value, "[redacted]")
    return SECRET_LIKE.sub("[redacted]", text)


class Lauf:
    """One run's stdout, line by line: deltas out as they come, the result line kept."""

    def __init__(self, on_delta: DeltaHandler | None, uhr: Stoppuhr) -> None:
        self.on_delta, self.uhr = on_delta, uhr
        self.text: list[str] = []
        self.thinking: list[str] = []
        self.api_error = ""  # the synthetic assistant line's error, when an API call failed
        self.api_retries = 0
        self.init: dict = {}
        self.result: dict | None = None

    def feed(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            event = json.loads(line)
        except ValueError:
            raise MotorError(
                ErrorKind.RETRYABLE,
                f"{NAME}: malformed JSON on stdout: {redact(line[:200].decode(errors='replace'))!r}",
            ) from None
        if not isinstance(event, dict):
            raise MotorError(ErrorKind.RETRYABLE, f"{NAME}: unexpected line on stdout")
        kind = event.get("type")
        if kind == "system":
            if event.get("subtype") == "init":
                self.init = event
            elif event.get("subtype") == "api_retry":
                self.api_retries += 1
        elif kind == "assistant":
            self.assistant(event)
        elif kind == "result":
            self.result = event

    def assistant(self, event: dict) -> None:
        message = event.get("message") or {}
        if event.get("error") or message.get("model") == "<synthetic>":
            self.api_error = str(event.get("error") or "unknown")
            return  # the CLI's own error notice, not an answer
        for block in message.get("content") or ():
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and block.get("text"):
                self.delta("text", block["text"])
                self.text.append(block["text"])
            elif block.get("type") == "thinking" and block.get("thinking"):
                self.delta("thinking", block["thinking"])
                self.thinking.append(block["thinking"])

    def delta(self, kind: str, text: str) -> None:
        self.uhr.tick()
        if self.on_delta is not None:
            self.on_delta(kind, text)


def result_error(result: dict, api_error: str) -> MotorError:
    """The kind of a failed run, from its result line (and the CLI's API error notice)."""
    subtype = result.get("subtype") or ""
    errors = [str(e) for e in result.get("errors") or () if e]
    message = redact(str(result.get("result") or "; ".join(errors) or subtype or "failed"))[:500]
    if subtype == "error_max_turns":
        return MotorError(
            ErrorKind.INVALID_REQUEST,
            f"{NAME}: turn limit reached ({message}); raise {MAX_TURNS_ENV}",
        )
    if subtype == "error_during_execution":
        return MotorError(ErrorKind.RETRYABLE, f"{NAME}: error during execution: {message}")
    if subtype.startswith("error_"):  # error_max_budget_usd, error_max_structured_output_retries
        return MotorError(ErrorKind.INVALID_REQUEST, f"{NAME}: {subtype}: {message}")
    if result.get("terminal_reason") == "prompt_too_long":
        return MotorError(ErrorKind.CONTEXT_TOO_LONG, f"{NAME}: {message}", status=400)
    status = result.get("api_error_status")
    if isinstance(status, int):
        return error_for_status(status, message, None, NAME)
    kind = ERROR_KINDS.get(api_error, ErrorKind.RETRYABLE)
    return MotorError(kind, f"{NAME}: {message}")


def usage_of(result: dict) -> Usage:
    """Anthropic's usage fields, summed by the CLI over the run's API calls."""
    raw = result.get("usage") or {}

    def count(key: str, source: dict = raw) -> int:
        value = source.get(key)
        return value if isinstance(value, int) else 0

    cached = count("cache_read_input_tokens")
    thinking = count("thinking_tokens", raw.get("output_tokens_details") or {})
    output = count("output_tokens")
    return Usage(
        input_tokens=count("input_tokens") + count("cache_creation_input_tokens") + cached,
        output_tokens=max(output - thinking, 0),
        cached_tokens=cached,
        thinking_tokens=thinking,
    )


def cost_of(result: dict, anfrage: Anfrage, usage: Usage) -> Decimal:
    """The CLI's own figure; the gear's prices only when it gave none."""
    reported = result.get("total_cost_usd")
    if isinstance(reported, int | float) and not isinstance(reported, bool):
        with contextlib.suppress(InvalidOperation):
            return Decimal(str(reported))
    return usage.cost_on(anfrage.gear)


def antwort(lauf: Lauf, anfrage: Anfrage, uhr: Stoppuhr) -> Antwort:
    result = lauf.result or {}
    usage = usage_of(result)
    text = result.get("result")
    extra = {
        key: result[key]
        for key in ("session_id", "num_turns", "duration_ms", "duration_api_ms", "terminal_reason")
        if result.get(key) is not None
    }
    if lauf.init.get("model"):
        extra["model"] = lauf.init["model"]
    if lauf.init.get("claude_code_version"):
        extra["claude_code_version"] = lauf.init["claude_code_version"]
    if lauf.api_retries:
        extra["api_retries"] = lauf.api_retries
    return Antwort(
        text=text if isinstance(text, str) else "".join(lauf.text),
        usage=usage,
        cost_usd=cost_of(result, anfrage, usage),
        latency_ms=uhr.latency_ms,
        ttft_ms=uhr.ttft_ms,
        thinking="".join(lauf.thinking),
        stop_reason=str(result.get("stop_reason") or result.get("terminal_reason") or ""),
        extra=extra,
    )


async def stderr_tail(stream: asyncio.StreamReader, keep: bytearray) -> None:
    """Drain stderr so the CLI never blocks on a full pipe; keep only its end."""
    while chunk := await stream.read(4096):
        keep += chunk
        del keep[:-STDERR_TAIL]


async def exited(process: asyncio.subprocess.Process, within_s: float) -> None:
    """Give the CLI a moment to exit by itself. Its return code, not ``wait()``: that also waits
    for the pipes, which a tool process it started may still hold open."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while process.returncode is None and loop.time() < deadline:
        await asyncio.sleep(0.01)


async def reap(process: asyncio.subprocess.Process, drain: asyncio.Task) -> None:
    """After the kill: wait until the exit and both pipes' ends are seen, so the transport closes."""

    async def ended() -> None:
        await process.stdout.read()
        await drain
        await process.wait()

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ended(), REAP_S)


def kill(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the CLI and whatever it started (its own session, so its own process group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def call(anfrage: Anfrage, on_delta: DeltaHandler | None = None) -> Antwort:
    argv, stdin_prompt = command(anfrage)
    provider = anfrage.provider
    limit_s = anfrage.gas.timeout_s
    startup_s = limit_s
    if provider is not None:
        limit_s = min(limit_s, provider.read_timeout_s)
        startup_s = min(limit_s, provider.connect_timeout_s)
    uhr = Stoppuhr()
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin_prompt else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=LINE_LIMIT,
        )
    except OSError as exc:
        raise MotorError(
            ErrorKind.UNAVAILABLE,
            f"{NAME}: cannot start {argv[0]!r} ({exc.strerror or type(exc).__name__}); "
            f"install the Claude Code CLI or set {BIN_ENV}",
        ) from None
    errors = bytearray()
    drain = asyncio.create_task(stderr_tail(process.stderr, errors))
    lauf = Lauf(on_delta, uhr)
    try:
        async with asyncio.timeout(limit_s):
            if stdin_prompt is not None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    process.stdin.write(stdin_prompt.encode())
                    await process.stdin.drain()
                process.stdin.close()
            try:
                first = await asyncio.wait_for(process.stdout.readline(), startup_s)
            except TimeoutError:
                raise MotorError(
                    ErrorKind.RETRYABLE,
                    f"{NAME}: the CLI printed nothing within {startup_s:g} s of starting (killed)",
                ) from None
            line = first
            while line and lauf.result is None:
                lauf.feed(line)
                if lauf.result is None:
                    line = await process.stdout.readline()
            await exited(process, EXIT_GRACE_S)
            if lauf.result is None:
                await asyncio.wait([drain], timeout=EXIT_GRACE_S)  # the rest of stderr
    except TimeoutError:
        raise MotorError(
            ErrorKind.RETRYABLE, f"{NAME}: timeout, no result within {limit_s:g} s (killed)"
        ) from None
    except ValueError:  # a line longer than LINE_LIMIT
        raise MotorError(ErrorKind.RETRYABLE, f"{NAME}: a stdout line is too long") from None
    finally:
        kill(process)
        await reap(process, drain)

    if lauf.result is None:
        tail = redact(errors.decode(errors="replace").strip())[-500:] or "(no stderr)"
        raise MotorError(
            ErrorKind.RETRYABLE,
            f"{NAME}: the CLI stopped without a result line (exit code {process.returncode}): "
            f"{tail}",
        )
    if lauf.result.get("is_error") or lauf.result.get("subtype", "success") != "success":
        raise result_error(lauf.result, lauf.api_error)
    return antwort(lauf, anfrage, uhr)
