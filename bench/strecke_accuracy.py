"""Accuracy and speed of the Strecke on the labelled tasks, without Django.

Run: .venv/bin/python bench/strecke_accuracy.py
"""

import json
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from garage.engine.strecke import Streckenanalyse, roads_from_config  # noqa: E402

ROADS_JSON = ROOT / "config" / "roads.json"
LABELLED_JSON = ROOT / "tests" / "engine" / "labelled_tasks.json"


def main() -> None:
    roads = roads_from_config(json.loads(ROADS_JSON.read_text(encoding="utf-8")))
    labelled = json.loads(LABELLED_JSON.read_text(encoding="utf-8"))
    analyser = Streckenanalyse(roads)

    hits, totals = Counter(), Counter()
    confusion: dict[str, Counter] = defaultdict(Counter)
    wrong = []
    for case in labelled:
        result = analyser.analyse(case["task"])
        ok = result.road == case["road"]
        for group in ("all", case["lang"], case["road"]):
            totals[group] += 1
            hits[group] += ok
        confusion[case["road"]][result.road] += 1
        if not ok:
            wrong.append((case, result))

    def line(group: str) -> str:
        return f"{group:<14} {hits[group] / totals[group]:6.1%}  ({hits[group]}/{totals[group]})"

    print("accuracy")
    for group in ("all", "en", "de"):
        print("  " + line(group))
    print("per road")
    for road in sorted(r.slug for r in roads):
        if totals[road]:
            others = ", ".join(f"{k} {v}" for k, v in confusion[road].items() if k != road)
            print("  " + line(road) + (f"  → {others}" if others else ""))
    print(f"misclassified ({len(wrong)})")
    for case, result in wrong:
        print(
            f"  [{case['lang']}] {case['road']} → {result.road} "
            f"(confidence {result.confidence:.2f}, signals {list(result.signals)}): "
            f"{case['task'][:100]!r}"
        )

    tasks = [case["task"] for case in labelled]
    for task in tasks:
        analyser.analyse(task)
    timings = []
    for _ in range(20):
        for task in tasks:
            start = time.perf_counter_ns()
            analyser.analyse(task)
            timings.append((time.perf_counter_ns() - start) / 1000)
    timings.sort()
    p99 = timings[int(len(timings) * 0.99)]
    print(
        f"analyse time over {len(timings)} calls: p50 {statistics.median(timings):.1f} µs, "
        f"p99 {p99:.1f} µs, max {timings[-1]:.1f} µs"
    )
    start = time.perf_counter()
    Streckenanalyse(roads)
    print(f"building the analyser: {(time.perf_counter() - start) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
