"""Which driver serves which provider kind, and the one ``call`` the engine uses."""

from garage.motorblock.base import Anfrage, Antwort, DeltaHandler, ErrorKind, MotorError
from garage.motorblock.pruefstand import Pruefplan, Pruefstand

# Provider kind → module path of its driver. A kind without a driver here is reported as
# unavailable by the Getriebe, never called.
DRIVERS: dict[str, str] = {
    "pruefstand": "garage.motorblock.pruefstand",
}


def available_kinds() -> frozenset[str]:
    return frozenset(DRIVERS)


_default_pruefstand: Pruefstand | None = None


def default_pruefstand() -> Pruefstand:
    """The process-wide Prüfstand, configured from CLUTCH_PRUEFSTAND_* variables."""
    global _default_pruefstand
    if _default_pruefstand is None:
        _default_pruefstand = Pruefstand(Pruefplan.from_env())
    return _default_pruefstand


async def call(anfrage: Anfrage, on_delta: DeltaHandler | None = None, *,
               pruefstand: Pruefstand | None = None) -> Antwort:
    """Run one call on the gear's provider, or on the Prüfstand when it is simulated."""
    if anfrage.simulated or anfrage.gear.provider_kind == "pruefstand":
        return await (pruefstand or default_pruefstand()).call(anfrage, on_delta)
    raise MotorError(
        ErrorKind.UNAVAILABLE,
        f"No driver for provider kind {anfrage.gear.provider_kind!r} in this installation.",
    )
