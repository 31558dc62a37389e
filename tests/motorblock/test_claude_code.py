"""The Claude Code driver against stand-in `claude` executables that print the CLI's real
stream-json lines (docs/research/provider-wire-formats.md §5, seen on CLI 2.1.332)."""

import asyncio
import json
import stat
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from garage.engine.gas import Gas
from garage.engine.types import GearSpec
from garage.motorblock import claude_code, registry
from garage.motorblock.base import Anfrage, ErrorKind, MotorError, ProviderConfig

SESSION = "5f0c2a8e-3b1d-4c47-9a57-0e6d2f1c9b11"

INIT = {
    "type": "system",
    "subtype": "init",
    "cwd": "/work/main",
    "session_id": SESSION,
    "tools": ["Task", "Bash", "Glob", "Grep", "Read", "Edit", "Write"],
    "mcp_servers": [],
    "model": "claude-sonnet-4-5",
    "permissionMode": "default",
    "slash_commands": ["compact", "context", "cost"],
    "apiKeySource": "ANTHROPIC_API_KEY",
    "claude_code_version": "2.1.332",
    "output_style": "default",
    "agents": ["general-purpose"],
    "skills": [],
    "plugins": [],
    "uuid": "0b7f3c1e-7c1a-4b8e-8f7e-0d3b8f4f6a01",
}
STATUS = {
    "type": "system",
    "subtype": "status",
    "status": "requesting",
    "session_id": SESSION,
    "uuid": "c3f1e0aa-1d2b-4a5c-9e8f-7a6b5c4d3e21",
}
MESSAGE_USAGE = {
    "input_tokens": 25,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 10,
    "output_tokens": 1,
}


def assistant(block: dict, message_id: str = "msg_01") -> dict:
    return {
        "type": "assistant",
        "message": {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "content": [block],
            "model": "claude-sonnet-4-5",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": MESSAGE_USAGE,
            "context_management": None,
        },
        "parent_tool_use_id": None,
        "session_id": SESSION,
        "uuid": "6d0e5b3a-2f4c-4e1b-8a9d-1c2b3a4d5e6f",
        "timestamp": "2026-11-26T00:35:29.917Z",
    }


THINKING = assistant({"type": "thinking", "thinking": "Let me think.", "signature": "EqQBsig"})
TEXT = assistant({"type": "text", "text": "Hello!"})


def result(**changes) -> dict:
    line = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "Hello!",
        "stop_reason": "end_turn",
        "terminal_reason": "completed",
        "num_turns": 1,
        "duration_ms": 121,
        "duration_api_ms": 25,
        "session_id": SESSION,
        "total_cost_usd": 0.000303,
        "usage": {
            "input_tokens": 25,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 10,
            "output_tokens": 15,
            "output_tokens_details": {"thinking_tokens": 0},
            "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
            "service_tier": "standard",
        },
        "modelUsage": {
            "claude-sonnet-4-5": {
                "inputTokens": 25,
                "outputTokens": 15,
                "cacheReadInputTokens": 10,
                "cacheCreationInputTokens": 0,
                "thinkingTokens": 0,
                "costUSD": 0.000303,
                "contextWindow": 200000,
                "maxOutputTokens": 32000,
            }
        },
        "permission_denials": [],
        "api_error_status": None,
        "uuid": "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b",
    }
    line.update(changes)
    return line


def api_error(error: str, text: str) -> dict:
    """The synthetic assistant line the CLI prints when an API call failed."""
    line = assistant({"type": "text", "text": text})
    line["message"]["model"] = "<synthetic>"
    line["error"] = error
    line["is_api_error_message"] = True
    return line


def failed(status: int | None, text: str, api_type: str | None, terminal: str = "api_error"):
    return result(
        is_error=True,
        result=text,
        stop_reason="stop_sequence",
        terminal_reason=terminal,
        api_error_status=status,
        api_error_type=api_type,
        total_cost_usd=0,
    )


STAND_IN = """#!{python} -IS
import json, os, subprocess, sys, time
spec = json.loads({spec!r})
here = spec["dir"]
with open(os.path.join(here, "argv.json"), "w") as f:
    json.dump(sys.argv[1:], f)
with open(os.path.join(here, "pid"), "w") as f:
    f.write(str(os.getpid()))
if spec["read_stdin"]:
    with open(os.path.join(here, "stdin.txt"), "w") as f:
        f.write(sys.stdin.read())
if spec["child"]:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(os.path.join(here, "child"), "w") as f:
        f.write(str(child.pid))
for line in spec["lines"]:
    sys.stdout.write(line + "\\n")
    sys.stdout.flush()
sys.stderr.write(spec["stderr"])
sys.stderr.flush()
if spec["hang"]:
    time.sleep(60)
sys.exit(spec["exit"])
"""


class StandIn:
    """A `claude` executable written into tmp_path; it records what it was given."""

    def __init__(
        self,
        tmp_path: Path,
        monkeypatch,
        lines: list,
        *,
        exit_code: int = 0,
        stderr: str = "",
        hang: bool = False,
        child: bool = False,
        read_stdin: bool = True,
    ) -> None:
        self.dir = tmp_path
        spec = {
            "dir": str(tmp_path),
            "lines": [line if isinstance(line, str) else json.dumps(line) for line in lines],
            "exit": exit_code,
            "stderr": stderr,
            "hang": hang,
            "child": child,
            "read_stdin": read_stdin,
        }
        self.path = tmp_path / "claude"
        self.path.write_text(STAND_IN.format(python=sys.executable, spec=json.dumps(spec)))
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv("CLAUDE_CODE_BIN", str(self.path))

    @property
    def argv(self) -> list[str]:
        return json.loads((self.dir / "argv.json").read_text())

    def pid(self, name: str = "pid") -> int:
        return int((self.dir / name).read_text())


def gone(pid: int, within_s: float = 2.0) -> bool:
    """True once ``pid`` no longer runs (a zombie waiting for its parent counts as gone)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


GEAR = GearSpec(
    name="claude-code",
    provider="claude-code",
    provider_kind="claude_code",
    model_id="sonnet",
    tier=5,
    input_price=Decimal("2.00"),
    output_price=Decimal("10.00"),
    cached_input_price=Decimal("0.10"),
    thinking_price=Decimal("10.00"),
)


def anfrage(
    prompt: str = "Say hello.",
    *,
    system: str = "Answer briefly.",
    timeout_s: float = 10.0,
    read_s: float = 600.0,
    startup_s: float = 10.0,
    messages: tuple[dict, ...] | None = None,
) -> Anfrage:
    return Anfrage(
        gear=GEAR,
        messages=messages or ({"role": "user", "content": prompt},),
        gas=Gas(
            wert=0.2,
            max_output_tokens=1024,
            strategy="direct",
            system_prompt=system,
            timeout_s=timeout_s,
        ),
        system=system,
        provider=ProviderConfig(
            name="claude-code",
            kind="claude_code",
            connect_timeout_s=startup_s,
            read_timeout_s=read_s,
            max_concurrency=2,
        ),
    )


def run(request: Anfrage, deltas: list | None = None):
    handler = (lambda kind, text: deltas.append((kind, text))) if deltas is not None else None
    return asyncio.run(claude_code.call(request, handler))


def fails(request: Anfrage) -> MotorError:
    with pytest.raises(MotorError) as caught:
        run(request)
    return caught.value


def test_streams_thinking_then_text_and_reports_usage_and_the_clis_own_cost(tmp_path, monkeypatch):
    StandIn(tmp_path, monkeypatch, [INIT, STATUS, THINKING, TEXT, result()])
    deltas: list = []

    antwort = run(anfrage(), deltas)

    assert deltas == [("thinking", "Let me think."), ("text", "Hello!")]
    assert antwort.text == "Hello!"
    assert antwort.thinking == "Let me think."
    assert antwort.usage.as_dict() == {
        "input_tokens": 35,  # 25 uncached + 0 cache writes + 10 cache reads
        "output_tokens": 15,
        "cached_tokens": 10,
        "thinking_tokens": 0,
    }
    assert antwort.cost_usd == Decimal("0.000303")
    assert antwort.stop_reason == "end_turn"
    assert antwort.ttft_ms is not None and antwort.ttft_ms <= antwort.latency_ms
    assert antwort.extra == {
        "session_id": SESSION,
        "num_turns": 1,
        "duration_ms": 121,
        "duration_api_ms": 25,
        "terminal_reason": "completed",
        "model": "claude-sonnet-4-5",
        "claude_code_version": "2.1.332",
    }


def test_argv_has_model_turn_limit_stream_json_verbose_and_the_prompt_intact(tmp_path, monkeypatch):
    stand_in = StandIn(tmp_path, monkeypatch, [INIT, TEXT, result()])
    prompt = 'Quote "this" & $HOME; `rm -rf /` *\nsecond line: Grüße, 日本語 \\n'

    run(anfrage(prompt, system="Antworte knapp."))

    argv = stand_in.argv
    assert argv[argv.index("-p") + 1] == prompt
    assert argv[argv.index("--output-format") + 1] == "stream-json"
    assert "--verbose" in argv
    assert argv[argv.index("--model") + 1] == "sonnet"
    assert argv[argv.index("--max-turns") + 1] == str(claude_code.DEFAULT_MAX_TURNS)
    assert argv[argv.index("--append-system-prompt") + 1] == "Antworte knapp."
    assert (tmp_path / "stdin.txt").read_text() == ""  # stdin is closed, the CLI never waits


def test_turn_limit_comes_from_claude_code_max_turns(tmp_path, monkeypatch):
    stand_in = StandIn(tmp_path, monkeypatch, [INIT, TEXT, result()])
    monkeypatch.setenv("CLAUDE_CODE_MAX_TURNS", "7")

    run(anfrage())

    assert stand_in.argv[stand_in.argv.index("--max-turns") + 1] == "7"


@pytest.mark.parametrize(
    "prompt",
    ["--help me write a haiku", "A prompt too long for one argv string. " * 4000],
    ids=["looks-like-an-option", "over-argv-limit"],
)
def test_prompt_that_cannot_travel_in_argv_goes_in_on_stdin(tmp_path, monkeypatch, prompt):
    stand_in = StandIn(tmp_path, monkeypatch, [INIT, TEXT, result()])

    run(anfrage(prompt))

    assert prompt not in stand_in.argv
    assert stand_in.argv[stand_in.argv.index("-p") + 1] == "--output-format"
    assert (tmp_path / "stdin.txt").read_text() == prompt


def test_conversation_is_sent_as_a_labelled_transcript(tmp_path, monkeypatch):
    stand_in = StandIn(tmp_path, monkeypatch, [INIT, TEXT, result()])
    messages = (
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another one."},
    )

    run(anfrage(messages=messages))

    sent = stand_in.argv[stand_in.argv.index("-p") + 1]
    assert sent == "User: Name a colour.\n\nAssistant: Blue.\n\nUser: Another one."


def test_thinking_tokens_the_cli_reports_are_taken_out_of_output(tmp_path, monkeypatch):
    usage = {
        "input_tokens": 40,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 2000,
        "output_tokens": 30,
        "output_tokens_details": {"thinking_tokens": 12},
    }
    StandIn(tmp_path, monkeypatch, [INIT, THINKING, TEXT, result(usage=usage)])

    antwort = run(anfrage())

    assert antwort.usage.as_dict() == {
        "input_tokens": 2140,
        "output_tokens": 18,
        "cached_tokens": 2000,
        "thinking_tokens": 12,
    }


def test_without_a_reported_cost_the_gears_prices_apply(tmp_path, monkeypatch):
    line = result()
    del line["total_cost_usd"]
    StandIn(tmp_path, monkeypatch, [INIT, TEXT, line])

    antwort = run(anfrage())

    assert antwort.cost_usd == GEAR.cost(35, 15, 10, 0)


def test_hanging_cli_is_killed_with_its_children_when_the_timeout_passes(tmp_path, monkeypatch):
    stand_in = StandIn(tmp_path, monkeypatch, [INIT, THINKING], hang=True, child=True)
    started = time.monotonic()

    error = fails(anfrage(timeout_s=0.4))

    assert time.monotonic() - started < 2.0
    assert error.kind == ErrorKind.RETRYABLE
    assert "timeout" in error.message
    assert gone(stand_in.pid())
    assert gone(stand_in.pid("child"))


def test_provider_read_timeout_caps_the_run(tmp_path, monkeypatch):
    stand_in = StandIn(tmp_path, monkeypatch, [INIT], hang=True)

    error = fails(anfrage(timeout_s=30, read_s=0.3))

    assert error.kind == ErrorKind.RETRYABLE
    assert "0.3 s" in error.message
    assert gone(stand_in.pid())


def test_cli_that_prints_nothing_within_the_startup_allowance_is_killed(tmp_path, monkeypatch):
    stand_in = StandIn(tmp_path, monkeypatch, [], hang=True)

    error = fails(anfrage(startup_s=0.3))

    assert error.kind == ErrorKind.RETRYABLE
    assert "printed nothing" in error.message
    assert gone(stand_in.pid())


def test_cancelling_the_call_kills_the_cli_and_propagates(tmp_path, monkeypatch):
    stand_in = StandIn(tmp_path, monkeypatch, [INIT, THINKING], hang=True, child=True)
    deltas: list = []

    async def scenario() -> None:
        task = asyncio.create_task(
            claude_code.call(anfrage(), lambda kind, text: deltas.append(kind))
        )
        while not deltas:
            await asyncio.sleep(0.01)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(scenario())
    assert gone(stand_in.pid())
    assert gone(stand_in.pid("child"))


def test_invalid_key_is_a_credentials_error_and_no_delta(tmp_path, monkeypatch):
    text = 'Failed to authenticate. API Error: 401 {"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}'
    lines = [
        INIT,
        api_error("authentication_failed", text),
        failed(401, text, "authentication_error"),
    ]
    StandIn(tmp_path, monkeypatch, lines, exit_code=1)
    deltas: list = []

    with pytest.raises(MotorError) as caught:
        run(anfrage(), deltas)

    assert caught.value.kind == ErrorKind.CREDENTIALS
    assert caught.value.status == 401
    assert "invalid x-api-key" in caught.value.message
    assert deltas == []


def test_not_logged_in_is_a_credentials_error(tmp_path, monkeypatch):
    text = "Not logged in · Please run /login"
    lines = [INIT, api_error("authentication_failed", text), failed(None, text, None)]
    StandIn(tmp_path, monkeypatch, lines, exit_code=1)

    error = fails(anfrage())

    assert error.kind == ErrorKind.CREDENTIALS
    assert "Not logged in" in error.message


@pytest.mark.parametrize(
    ("status", "error", "api_type", "text", "kind"),
    [
        (
            429,
            "rate_limit",
            "rate_limit_error",
            "API Error: Request rejected (429) · Number of requests has exceeded your rate limit",
            ErrorKind.RETRYABLE,
        ),
        (
            529,
            "server_error",
            "overloaded_error",
            "API Error: 529 Overloaded. This is a server-side issue, usually temporary",
            ErrorKind.RETRYABLE,
        ),
        (
            500,
            "server_error",
            "api_error",
            "API Error: 500 Internal server error",
            ErrorKind.RETRYABLE,
        ),
        (
            403,
            "authentication_failed",
            "permission_error",
            "API Error: 403 Your API key does not have permission",
            ErrorKind.CREDENTIALS,
        ),
        (
            400,
            "invalid_request",
            "invalid_request_error",
            "API Error: 400 messages.0.content: must not be empty",
            ErrorKind.INVALID_REQUEST,
        ),
    ],
)
def test_api_errors_are_sorted_by_their_status(
    tmp_path, monkeypatch, status, error, api_type, text, kind
):
    StandIn(
        tmp_path,
        monkeypatch,
        [INIT, api_error(error, text), failed(status, text, api_type)],
        exit_code=1,
    )

    caught = fails(anfrage())

    assert caught.kind == kind
    assert caught.status == status
    assert text in caught.message


def test_prompt_too_long_is_context_too_long(tmp_path, monkeypatch):
    text = "Prompt is too long: 1204815 tokens > 1000000 maximum"
    lines = [
        INIT,
        api_error("invalid_request", text),
        failed(400, text, "invalid_request_error", terminal="prompt_too_long"),
    ]
    StandIn(tmp_path, monkeypatch, lines, exit_code=1)

    error = fails(anfrage())

    assert error.kind == ErrorKind.CONTEXT_TOO_LONG
    assert "Prompt is too long" in error.message


def test_turn_limit_reached_is_an_invalid_request(tmp_path, monkeypatch):
    line = {
        "type": "result",
        "subtype": "error_max_turns",
        "is_error": True,
        "num_turns": 2,
        "stop_reason": "tool_use",
        "terminal_reason": "max_turns",
        "errors": ["Reached maximum number of turns (1)"],
        "duration_ms": 3012,
        "duration_api_ms": 2875,
        "session_id": SESSION,
        "total_cost_usd": 0.000258,
        "usage": MESSAGE_USAGE,
        "permission_denials": [],
        "api_error_status": None,
    }
    StandIn(tmp_path, monkeypatch, [INIT, TEXT, line], exit_code=1)

    error = fails(anfrage())

    assert error.kind == ErrorKind.INVALID_REQUEST
    assert "turn limit reached" in error.message
    assert "Reached maximum number of turns (1)" in error.message


def test_error_during_execution_is_retryable(tmp_path, monkeypatch):
    line = result(subtype="error_during_execution", is_error=True, errors=["aborted"])
    del line["result"]
    StandIn(tmp_path, monkeypatch, [INIT, line], exit_code=1)

    error = fails(anfrage())

    assert error.kind == ErrorKind.RETRYABLE
    assert "aborted" in error.message


def test_exit_without_a_result_line_is_retryable_with_stderr_tail_and_no_secret(
    tmp_path, monkeypatch
):
    key = "sk-ant-api03-AbCdEf0123456789AbCdEf0123456789"
    monkeypatch.setenv("CLAUDE_CODE_TEST_TOKEN", "hunter2-very-secret")
    stderr = (
        f"using key {key} and token hunter2-very-secret\n"
        "Error: When using --print, --output-format=stream-json requires --verbose\n"
    )
    StandIn(tmp_path, monkeypatch, [], exit_code=1, stderr=stderr)

    error = fails(anfrage())

    assert error.kind == ErrorKind.RETRYABLE
    assert "exit code 1" in error.message
    assert "requires --verbose" in error.message
    assert key not in error.message
    assert "hunter2-very-secret" not in error.message


def test_stream_that_ends_before_its_result_is_retryable(tmp_path, monkeypatch):
    StandIn(tmp_path, monkeypatch, [INIT, THINKING], exit_code=0)

    error = fails(anfrage())

    assert error.kind == ErrorKind.RETRYABLE
    assert "without a result line" in error.message


def test_malformed_json_on_stdout_is_retryable(tmp_path, monkeypatch):
    StandIn(tmp_path, monkeypatch, [INIT, '{"type":"assistant","message":{"id":', result()])

    error = fails(anfrage())

    assert error.kind == ErrorKind.RETRYABLE
    assert "malformed JSON" in error.message


def test_missing_executable_is_unavailable_and_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("CLAUDE_CODE_BIN", str(tmp_path / "no-such-claude"))

    assert "CLAUDE_CODE_BIN" in claude_code.available()
    error = fails(anfrage())
    assert error.kind == ErrorKind.UNAVAILABLE
    assert "CLAUDE_CODE_BIN" in error.message


def test_found_executable_is_available_and_the_registry_runs_it(tmp_path, monkeypatch):
    StandIn(tmp_path, monkeypatch, [INIT, TEXT, result()])

    assert claude_code.available() == ""
    assert registry.why_unavailable("claude_code") == ""
    antwort = asyncio.run(registry.call(anfrage()))
    assert antwort.text == "Hello!"


def test_stand_in_is_not_left_running_after_a_normal_run(tmp_path, monkeypatch):
    stand_in = StandIn(tmp_path, monkeypatch, [INIT, TEXT, result()], child=True)

    run(anfrage())

    assert gone(stand_in.pid())
    assert gone(stand_in.pid("child"))
