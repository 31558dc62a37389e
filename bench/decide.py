"""Analyse + decide time per task over the labelled set, in-process and without Django.

Run: .venv/bin/python bench/decide.py [--rounds N]
Prints p50/p99 in microseconds for the Strecke alone and for Strecke + Kupplung.
"""

import argparse
import json
import random
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from garage.engine.config import gears_from_config  # noqa: E402
from garage.engine.kupplung import Lage, kuppeln  # noqa: E402
from garage.engine.strecke import analyser_for, roads_from_config  # noqa: E402
from garage.engine.tankuhr import Fuel  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    config = ROOT / "config"
    roads = roads_from_config(json.loads((config / "roads.json").read_text()))
    gears = gears_from_config(
        json.loads((config / "providers.json").read_text()),
        json.loads((config / "gears.json").read_text()),
    )
    tasks = [c["task"] for c in json.loads((ROOT / "tests/engine/labelled_tasks.json").read_text())]
    lage = Lage(
        gears=tuple(g for g in gears if not g.simulated),
        roads={r.slug: r for r in roads},
        fuel=Fuel(Decimal("12"), Decimal("50"), Decimal("120"), Decimal("500")),
        open_breakers=frozenset({"gemini-pro"}),
        unavailable={"ollama-llama": "not reachable"},
        epsilon=0.1,
    )
    analyser = analyser_for(roads)
    rng = random.Random(1)
    for task in tasks:  # warm up
        kuppeln(analyser.analyse(task), lage, rng=rng)
    analyse_us, total_us = [], []
    clock = time.perf_counter_ns
    for _ in range(args.rounds):
        for task in tasks:
            t0 = clock()
            strecke = analyser.analyse(task)
            t1 = clock()
            kuppeln(strecke, lage, rng=rng)
            t2 = clock()
            analyse_us.append((t1 - t0) / 1000)
            total_us.append((t2 - t0) / 1000)
    n = len(total_us)
    print(f"tasks: {len(tasks)} × {args.rounds} rounds = {n} decisions")
    print(
        f"analyse          p50 {percentile(analyse_us, 50):7.1f} µs   p99 {percentile(analyse_us, 99):7.1f} µs"
    )
    print(
        f"analyse + decide p50 {percentile(total_us, 50):7.1f} µs   p99 {percentile(total_us, 99):7.1f} µs"
        f"   mean {statistics.fmean(total_us):.1f} µs"
    )


if __name__ == "__main__":
    main()
