"""Latency of a decision with the Lernrouter: p50 and p99, without a database.

Trains the router on a RouterBench-format table (every prompt × every model as a trip), then
times the whole decision for held-out prompts: Strecke analysis, the router's estimates for
every gear, and the Kupplung's remaining steps.

Run: .venv/bin/python bench/decide_learned.py [--data DIR] [--kind logreg|knn] [--n 2000]
"""

import argparse
import json
import os
import random
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clutch_site.settings")

import django  # noqa: E402

django.setup()

from garage import lernrouter  # noqa: E402
from garage import routerbench as rb  # noqa: E402
from garage.engine.kupplung import Lage, Wunsch  # noqa: E402
from garage.engine.strecke import Streckenanalyse, roads_from_config  # noqa: E402
from garage.engine.tankuhr import Fuel  # noqa: E402
from garage.engine.types import GearSpec  # noqa: E402
from garage.lernkupplung import kuppeln_gelernt  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "routerbench"
SMALL = ROOT / "tests" / "fixtures" / "routerbench_small"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=SHARED if SHARED.exists() else SMALL)
    parser.add_argument("--kind", choices=lernrouter.KINDS, default="logreg")
    parser.add_argument("--n", type=int, default=2000, help="timed decisions")
    args = parser.parse_args()

    table = rb.load(args.data)
    mapping = rb.map_models(table)
    rows = list(table.rows)
    random.Random(0).shuffle(rows)
    cut = max(1, len(rows) * 4 // 5)
    train, held_out = rows[:cut], rows[cut:] or rows[:1]
    samples = [
        lernrouter.Sample(r.prompt, m.gear, float(r.scores[m.model]), r.costs[m.model])
        for r in train
        for m in mapping
        if r.scores[m.model] is not None
    ]
    started = time.perf_counter()
    router = lernrouter.fit(samples, kind=args.kind, min_trips=min(20, len(train)))
    trained_s = time.perf_counter() - started

    roads = roads_from_config(json.loads((ROOT / "config" / "roads.json").read_text("utf-8")))
    gears = tuple(
        GearSpec(
            m.gear,
            "routerbench",
            "openai",
            m.model,
            m.tier,
            Decimal("1"),
            Decimal("1"),
            context_window=1_000_000,
            max_output_tokens=1024,
        )
        for m in mapping
    )
    lage = Lage(
        gears=gears,
        roads={r.slug: r for r in roads},
        fuel=Fuel(Decimal(0), Decimal(50), Decimal(0), Decimal(500)),
    )
    analyser = Streckenanalyse(roads)
    rng = random.Random(1)
    prompts = [held_out[i % len(held_out)].prompt for i in range(args.n)]
    for prompt in prompts[:50]:  # warm-up
        kuppeln_gelernt(analyser.analyse(prompt), lage, Wunsch(), rng, prompt=prompt, router=router)

    whole, router_only = [], []
    for prompt in prompts:
        t0 = time.perf_counter()
        strecke = analyser.analyse(prompt)
        kuppeln_gelernt(strecke, lage, Wunsch(), rng, prompt=prompt, router=router)
        t1 = time.perf_counter()
        router.estimates(prompt, 0.07)
        t2 = time.perf_counter()
        whole.append((t1 - t0) * 1000)
        router_only.append((t2 - t1) * 1000)

    def pct(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]

    chars = statistics.median(len(p) for p in prompts)
    print(
        f"Lernrouter {args.kind}: {len(samples)} training trips, {len(router.gears)} gears, "
        f"{len(router.vectorizer.vocabulary_)} features; trained in {trained_s:.1f} s"
    )
    print(f"{args.n} decisions on held-out prompts (median {chars:.0f} characters)")
    print(f"  whole decision (analysis + router + Kupplung): p50 {statistics.median(whole):.2f} ms"
          f"  p99 {pct(whole, 99):.2f} ms")  # fmt: skip
    print(f"  router estimates alone:                       p50 "
          f"{statistics.median(router_only):.2f} ms  p99 {pct(router_only, 99):.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
