"""`manage.py providers`: configured, reachable, models served, recorded on the Provider row."""

import json
import time
from io import StringIO

import pytest
from django.core.management import call_command

from garage.models import Provider
from tests.motorblock.fakeserver import FakeServer, Reply, unused_url

KEY = "sk-test-do-not-print-0123456789"
TAGS = {
    "models": [
        {"name": "llama3.2:3b", "model": "llama3.2:3b", "size": 2019393189},
        {"name": "qwen3.5:4b", "model": "qwen3.5:4b", "size": 3400000000},
    ]
}
OPENAI_MODELS = {
    "object": "list",
    "data": [
        {"id": "gpt-6.1-terra", "object": "model", "created": 1686935002, "owned_by": "openai"},
        {
            "id": "gpt-6.1-terra-mini",
            "object": "model",
            "created": 1686935002,
            "owned_by": "openai",
        },
    ],
}


@pytest.fixture
def servers(defaults, monkeypatch):
    """Ollama and an OpenAI-compatible server up, the OpenAI key set, no `claude` binary."""
    ollama_server, openai_server = FakeServer().start(), FakeServer().start()
    ollama_server.default = Reply(200, TAGS)
    openai_server.default = Reply(200, OPENAI_MODELS)
    monkeypatch.setenv("OLLAMA_HOST", ollama_server.url)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{openai_server.url}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("CLAUDE_CODE_BIN", "no-such-claude-binary")
    yield ollama_server, openai_server
    ollama_server.stop()
    openai_server.stop()


def providers(*args: str) -> str:
    out = StringIO()
    call_command("providers", *args, stdout=out)
    return out.getvalue()


def report(*args: str) -> dict[str, dict]:
    return {entry["name"]: entry for entry in json.loads(providers("--json", *args))}


def test_reachable_servers_report_their_models(servers):
    ollama_server, openai_server = servers
    found = report()
    assert found["ollama"] == {
        "name": "ollama",
        "kind": "ollama",
        "configured": True,
        "env_vars": [],
        "reachable": True,
        "detail": f"2 models at {ollama_server.url}",
        "models": ["llama3.2:3b", "qwen3.5:4b"],
    }
    openai = found["openai"]
    assert (openai["configured"], openai["env_vars"]) == (True, ["OPENAI_API_KEY"])
    assert openai["reachable"] is True
    assert openai["models"] == ["gpt-6.1-terra", "gpt-6.1-terra-mini"]
    assert openai_server.seen[0].path == "/v1/models"
    assert openai_server.seen[0].headers["authorization"] == f"Bearer {KEY}"
    assert ollama_server.seen[0].path == "/api/tags"


def test_every_provider_row_is_reported(servers):
    found = report()
    assert set(found) == set(Provider.objects.values_list("name", flat=True))
    assert found["pruefstand"]["reachable"] is True
    assert set(found["pruefstand"]) == {
        "name",
        "kind",
        "configured",
        "env_vars",
        "reachable",
        "detail",
        "models",
    }


def test_provider_without_key_names_the_variable_and_is_not_contacted(servers):
    found = report()
    gemini = found["gemini"]
    assert gemini["configured"] is False
    assert gemini["env_vars"] == ["GEMINI_API_KEY", "GOOGLE_API_KEY"]
    assert gemini["reachable"] is not True
    assert "GEMINI_API_KEY" in gemini["detail"]


def test_probe_outcome_is_recorded_on_the_provider_row(servers):
    Provider.objects.filter(name="ollama").update(probe_ok=None, probe_detail="", probe_at=None)
    report()
    ollama = Provider.objects.get(name="ollama")
    assert ollama.probe_ok is True
    assert ollama.probe_detail.startswith("2 models at http://127.0.0.1:")
    assert ollama.probe_at is not None
    assert Provider.objects.get(name="claude-code").probe_ok is False


def test_ollama_host_without_scheme_is_reached(servers, monkeypatch):
    ollama_server, _ = servers
    monkeypatch.setenv("OLLAMA_HOST", ollama_server.url.removeprefix("http://"))
    assert report()["ollama"]["reachable"] is True


def test_dead_port_is_unreachable_and_recorded(servers, monkeypatch):
    Provider.objects.filter(name="ollama").update(probe_ok=True)
    monkeypatch.setenv("OLLAMA_HOST", unused_url())
    ollama = report()["ollama"]
    assert ollama["reachable"] is False
    assert "connection failed" in ollama["detail"]
    row = Provider.objects.get(name="ollama")
    assert row.probe_ok is False
    assert "connection failed" in row.probe_detail


def test_gear_model_not_pulled_is_named_with_the_pull_command(servers):
    ollama_server, _ = servers
    ollama_server.default = Reply(200, {"models": [{"name": "llama3.2:3b"}]})
    detail = report()["ollama"]["detail"]
    assert "not served: qwen3.5:4b (ollama pull qwen3.5:4b)" in detail


def test_rejected_key_is_unreachable_and_the_key_is_never_printed(servers):
    _, openai_server = servers
    echoed = {
        "error": {
            "message": f"Incorrect API key provided: {KEY}.",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    }
    openai_server.default = Reply(401, echoed)
    text = providers() + providers("--json")
    assert KEY not in text
    openai = report()["openai"]
    assert openai["reachable"] is False
    assert "401" in openai["detail"]
    assert KEY not in Provider.objects.get(name="openai").probe_detail


def test_slow_server_beyond_the_timeout_is_unreachable(servers):
    ollama_server, _ = servers
    ollama_server.default = Reply(200, TAGS, delay_first_byte_s=1.0)
    started = time.perf_counter()
    ollama = report("--timeout", "0.2")["ollama"]
    assert time.perf_counter() - started < 0.8
    assert ollama["reachable"] is False


def test_servers_are_probed_concurrently(servers):
    ollama_server, openai_server = servers
    ollama_server.default = Reply(200, TAGS, delay_first_byte_s=0.5)
    openai_server.default = Reply(200, OPENAI_MODELS, delay_first_byte_s=0.5)
    started = time.perf_counter()
    found = report()
    assert time.perf_counter() - started < 0.95  # one after the other would take 1 s
    assert found["ollama"]["reachable"] and found["openai"]["reachable"]


def test_claude_code_is_reachable_when_its_binary_is_on_path(servers, monkeypatch, tmp_path):
    binary = tmp_path / "claude"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("CLAUDE_CODE_BIN", str(binary))
    claude = report()["claude-code"]
    assert claude["reachable"] is True
    assert str(binary) in claude["detail"]


def test_missing_claude_binary_says_how_to_configure_it(servers):
    claude = report()["claude-code"]
    assert claude["reachable"] is False
    assert "CLAUDE_CODE_BIN" in claude["detail"]


def test_human_output_is_one_aligned_line_per_provider(servers):
    lines = providers().splitlines()
    assert len(lines) == Provider.objects.count()
    by_name = {line.split()[1]: line for line in lines}
    assert by_name["ollama"].startswith("✓ ollama ")
    assert "no key needed" in by_name["ollama"]
    assert by_name["openai"].startswith("✓ openai ")
    assert "key in OPENAI_API_KEY" in by_name["openai"]
    assert by_name["claude-code"].startswith("✗ claude-code ")
    assert "key missing" in by_name["anthropic"]
    assert "set ANTHROPIC_API_KEY" in by_name["anthropic"]
    kind_column = {line.index(line.split()[2], len("✓ ") + len(line.split()[1])) for line in lines}
    assert len(kind_column) == 1
    assert all(KEY not in line for line in lines)
