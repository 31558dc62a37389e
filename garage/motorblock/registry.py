"""Which driver serves which provider kind, and the one ``call`` the engine uses.

A driver is a module with ``async def call(anfrage, on_delta) -> Antwort``, optionally
``async def models(provider) -> list[str]`` (what the server has installed) and
``def available() -> str`` (empty when it can run here, else why not).
"""

import importlib
from types import ModuleType

from garage.motorblock.base import Anfrage, Antwort, DeltaHandler, ErrorKind, MotorError
from garage.motorblock.pruefstand import Pruefplan, Pruefstand

DRIVERS: dict[str, str] = {
    "pruefstand": "garage.motorblock.pruefstand",
    "anthropic": "garage.motorblock.anthropic",
    "gemini": "garage.motorblock.gemini",
    "ollama": "garage.motorblock.ollama",
    "openai": "garage.motorblock.openai_compat",
    "claude_code": "garage.motorblock.claude_code",
    "llamacpp": "garage.motorblock.llamacpp",
}

_modules: dict[str, ModuleType | None] = {}


def driver(kind: str) -> ModuleType | None:
    if kind not in _modules:
        try:
            _modules[kind] = importlib.import_module(DRIVERS[kind]) if kind in DRIVERS else None
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("garage.motorblock"):
                _modules[kind] = None  # that driver is not part of this installation
            else:
                raise
    return _modules[kind]


def why_unavailable(kind: str) -> str:
    """Empty when a driver for ``kind`` can run here, else the reason it cannot."""
    module = driver(kind)
    if module is None:
        return f"no driver for provider kind {kind!r} in this installation"
    check = getattr(module, "available", None)
    return check() if check else ""


def available_kinds() -> frozenset[str]:
    return frozenset(kind for kind in DRIVERS if not why_unavailable(kind))


_default_pruefstand: Pruefstand | None = None


def default_pruefstand() -> Pruefstand:
    """The process-wide Prüfstand, configured from CLUTCH_PRUEFSTAND_* variables."""
    global _default_pruefstand
    if _default_pruefstand is None:
        _default_pruefstand = Pruefstand(Pruefplan.from_env())
    return _default_pruefstand


async def call(
    anfrage: Anfrage, on_delta: DeltaHandler | None = None, *, pruefstand: Pruefstand | None = None
) -> Antwort:
    """Run one call on the gear's provider, or on the Prüfstand when it is simulated."""
    if anfrage.simulated or anfrage.gear.provider_kind == "pruefstand":
        return await (pruefstand or default_pruefstand()).call(anfrage, on_delta)
    why = why_unavailable(anfrage.gear.provider_kind)
    if why:
        raise MotorError(ErrorKind.UNAVAILABLE, why)
    if anfrage.provider is None:
        raise MotorError(
            ErrorKind.UNAVAILABLE, f"no provider settings for gear {anfrage.gear.name}"
        )
    return await driver(anfrage.gear.provider_kind).call(anfrage, on_delta)
