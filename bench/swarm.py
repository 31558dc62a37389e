"""A swarm of 200 items with 100 ms simulated latency each, at concurrency 20, in one worker.

Run: .venv/bin/python bench/swarm.py [--items 200] [--latency-ms 100] [--concurrency 20]
The ideal wall time is items / concurrency × latency (1.0 s for the defaults); the rest is
clutch's own overhead: legs, budget reservations, events and breakers written per item.
"""

import argparse
import time

from _setup import django_in_tempdir


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    data = django_in_tempdir()

    from fahrtenbuch.models import Trip
    from garage.fahrer import Fahrer

    ideal = args.items / args.concurrency * args.latency_ms / 1000
    print(
        f"data dir {data}; {args.items} items × {args.latency_ms} ms at concurrency {args.concurrency}: "
        f"ideal {ideal:.2f} s"
    )
    from clutch_site.startup import warm_up

    warm_up()  # as the cockpit's worker does when it starts
    fahrer = Fahrer(seed=1)
    for run in range(args.runs):
        items = [f"file_{i:03d}.py" for i in range(args.items)]
        started = time.perf_counter()
        result = fahrer.fahren(
            "Format each file with black",
            pattern="swarm",
            items=items,
            concurrency=args.concurrency,
            pruefstand={"fixed_latency_ms": args.latency_ms},
            gear="claude-haiku",
        )
        wall = time.perf_counter() - started
        trip = Trip.objects.get(pk=result.trip_id)
        legs = trip.legs.count()
        print(
            f"run {run + 1}: {trip.status}, {legs} legs, driving {trip.latency_ms / 1000:.3f} s, "
            f"submit+drive {wall:.3f} s ({wall / ideal:.2f}× ideal)"
        )


if __name__ == "__main__":
    main()
