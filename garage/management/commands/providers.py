"""Check every provider: is it configured, can it be reached, which models does it serve.

The outcome is recorded on the Provider row (probe_ok, probe_detail, probe_at): the Getriebe
routes to a local server such as Ollama only once a probe has seen it up, so run this after
starting one. Key values are never printed, only the names of the variables that hold them.
"""

import asyncio
import json
import os
import shutil
from dataclasses import asdict, dataclass, field, replace

from django.core.management.base import BaseCommand
from django.utils import timezone

from garage.getriebe import provider_config
from garage.models import Provider, ProviderKind
from garage.motorblock import registry
from garage.motorblock.base import MotorError, ProviderConfig

IN_PROCESS_KINDS = frozenset({ProviderKind.LLAMACPP, ProviderKind.PRUEFSTAND})


@dataclass
class Probe:
    name: str
    kind: str
    configured: bool
    env_vars: list[str]
    reachable: bool | None  # None: not checked (no key, or nothing to ask)
    detail: str
    models: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    """What a probe needs, read from the database before the event loop starts."""

    probe: Probe
    config: ProviderConfig
    base_url: str
    unavailable: str  # why the driver cannot run here, or ""
    gear_models: tuple[str, ...]


def _missing(wanted: tuple[str, ...], served: list[str]) -> list[str]:
    """Gear model ids the server does not offer; Ollama's ``qwen3`` is ``qwen3:latest``."""
    offered = set(served) | {name.removesuffix(":latest") for name in served}
    return [model for model in wanted if model not in offered]


async def _ask_server(plan: Plan, timeout_s: float) -> None:
    probe = plan.probe
    list_models = getattr(registry.driver(probe.kind), "models", None)
    if list_models is None:
        probe.detail = "its driver cannot list models, so it was not checked"
        return
    where = plan.base_url or "the default address"
    config = replace(
        plan.config,
        connect_timeout_s=min(plan.config.connect_timeout_s, timeout_s),
        read_timeout_s=min(plan.config.read_timeout_s, timeout_s),
    )
    try:
        found = await asyncio.wait_for(list_models(config), timeout_s)
    except TimeoutError:
        probe.reachable, probe.detail = False, f"no answer from {where} within {timeout_s:g} s"
        return
    except MotorError as exc:
        probe.reachable, probe.detail = False, f"{where}: {exc.message}"
        return
    except Exception as exc:  # a driver's bug must not hide the other providers' report
        probe.reachable, probe.detail = False, f"{where}: {type(exc).__name__}: {exc}"
        return
    probe.reachable, probe.models = True, sorted(found)
    probe.detail = f"{len(found)} models at {where}"
    missing = _missing(plan.gear_models, found)
    if missing:
        probe.detail += f"; not served: {', '.join(missing)}"
        if probe.kind == ProviderKind.OLLAMA:
            probe.detail += f" (ollama pull {missing[0]})"


async def _run(plan: Plan, timeout_s: float) -> Probe:
    probe = plan.probe
    if plan.unavailable:
        probe.reachable, probe.detail = False, plan.unavailable
    elif not probe.configured:
        probe.detail = f"no key: set {' or '.join(probe.env_vars)}"
    elif probe.kind == ProviderKind.CLAUDE_CODE:
        binary = os.environ.get("CLAUDE_CODE_BIN", "claude")
        path = shutil.which(binary)
        probe.reachable = path is not None
        probe.detail = (
            f"{binary} found at {path}"
            if path
            else f"the {binary!r} executable is not on PATH (set CLAUDE_CODE_BIN)"
        )
    elif probe.kind in IN_PROCESS_KINDS:
        probe.reachable, probe.detail = True, "runs in this process"
    else:
        await _ask_server(plan, timeout_s)
    return probe


async def probe_all(plans: list[Plan], timeout_s: float) -> list[Probe]:
    return list(await asyncio.gather(*(_run(plan, timeout_s) for plan in plans)))


def plan_for(provider: Provider) -> Plan:
    config = provider_config(provider)
    return Plan(
        probe=Probe(
            name=provider.name,
            kind=provider.kind,
            configured=provider.has_credentials,
            env_vars=list(provider.api_key_env),
            reachable=None,
            detail="",
        ),
        config=config,
        base_url=config.base_url,
        unavailable=registry.why_unavailable(provider.kind),
        gear_models=tuple(
            provider.gears.filter(enabled=True)
            .order_by("model_id")
            .values_list("model_id", flat=True)
        ),
    )


class Command(BaseCommand):
    help = (
        "Check every provider: key configured, server reachable, models served. Records the "
        "result on the provider, which local servers (Ollama) need before they are routed to."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="A JSON list, one per provider.")
        parser.add_argument(
            "--timeout",
            type=float,
            default=3.0,
            metavar="S",
            help="Seconds to wait for each server (default 3).",
        )

    def handle(self, *args, **options) -> None:
        providers = list(Provider.objects.order_by("name"))
        plans = [plan_for(provider) for provider in providers]
        probes = asyncio.run(probe_all(plans, max(options["timeout"], 0.1)))
        now = timezone.now()
        for provider, probe in zip(providers, probes, strict=True):
            Provider.objects.filter(pk=provider.pk).update(
                probe_ok=probe.reachable, probe_detail=probe.detail[:300], probe_at=now
            )
            if probe.reachable and provider.needs_credentials:
                # The server took the key for its model list: the key works again.
                Provider.objects.filter(pk=provider.pk).update(
                    misconfigured="", misconfigured_key=""
                )
            if not provider.enabled:
                probe.detail += " (disabled in the admin)"
        if options["json"]:
            self.stdout.write(json.dumps([asdict(p) for p in probes], ensure_ascii=False))
            return
        self._print(providers, probes)

    def _print(self, providers: list[Provider], probes: list[Probe]) -> None:
        rows = []
        for provider, probe in zip(providers, probes, strict=True):
            if not probe.env_vars:
                key = "no key needed"
            elif probe.configured:
                key = f"key in {provider.credential_source}"
            else:
                key = "key missing"
            state = {True: "reachable", False: "unreachable", None: "not checked"}[probe.reachable]
            mark = "✓" if probe.configured and probe.reachable else "✗"
            rows.append((mark, probe.name, probe.kind, key, state, probe.detail))
        widths = [max(len(row[i]) for row in rows) for i in range(1, 5)]
        for mark, *cells, detail in rows:
            padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=True)]
            self.stdout.write(f"{mark} {'  '.join([*padded, detail])}".rstrip())
