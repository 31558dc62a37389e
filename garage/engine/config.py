"""Gear specs straight from config/*.json, for benchmarks and tests that run without Django."""

from decimal import Decimal

from garage.engine.types import GearSpec


def gears_from_config(providers: dict, gears: dict) -> list[GearSpec]:
    kinds = {p["name"]: p["kind"] for p in providers["providers"]}
    specs = []
    for g in gears["gears"]:
        prices = g.get("prices_usd_per_mtok", {})
        specs.append(
            GearSpec(
                name=g["name"],
                provider=g["provider"],
                provider_kind=kinds[g["provider"]],
                model_id=g["model_id"],
                tier=g["tier"],
                input_price=Decimal(prices.get("input", "0")),
                output_price=Decimal(prices.get("output", "0")),
                cached_input_price=Decimal(prices.get("cached_input", "0")),
                thinking_price=Decimal(prices.get("thinking", "0")),
                context_window=g["context_window"],
                max_output_tokens=g["max_output_tokens"],
                reasoning=g.get("reasoning", "none"),
                label=g.get("label", ""),
                simulated=kinds[g["provider"]] == "pruefstand",
            )
        )
    return specs
