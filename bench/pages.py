"""Cockpit and history render times with a million trips on the embedded SQLite default.

Run: .venv/bin/python bench/pages.py [--trips 1000000] [--legs 200000] [--runs 30]
     CLUTCH_BENCH_DATA_DIR=/tmp/clutch-pages .venv/bin/python bench/pages.py --reuse

Generates the trips in a throwaway data dir (bulk inserts with executemany, spread over a
year, 60 people, every road, gear and status), the per-minute Tacho rollups and the daily
spend from them, and legs for the newest trips; then renders each page with the Django test
Client, logged in as a busy member, a light member and an admin, and prints p50/p95.
"""

import argparse
import json
import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from _setup import django_in_tempdir

STATUSES = [("succeeded", 0.88), ("failed", 0.06), ("cancelled", 0.02), ("refused", 0.04)]
VERBS = ["Fix", "Refactor", "Review", "Format", "Document", "Test", "Migrate", "Design", "Debug"]
THINGS = ["the login bug", "the billing module", "the CSV export", "the README", "the API client",
          "the payment flow", "the search index", "the cache layer", "the report job"]  # fmt: skip
PLACES = ["in auth.py", "across the services", "in the admin", "for the mobile app", "in utils",
          "before the release", "in the worker", "in the scheduler"]  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(q / 100 * len(ordered)) - 1)]


def row_template(model, connection) -> tuple[list[str], dict]:
    """Every concrete column of ``model`` with its default as the database stores it, so
    the bench keeps working when someone adds a field with a default."""
    columns, defaults = [], {}
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(field.column)
        value = field.get_default() if field.has_default() else None
        if (
            value is None
            and not field.null
            and field.get_internal_type()
            in (
                "CharField",
                "TextField",
            )
        ):
            value = ""
        defaults[field.column] = field.get_db_prep_save(value, connection)
    return columns, defaults


def insert(connection, table: str, columns: list[str], rows: list[tuple]) -> None:
    marks = ", ".join(["%s"] * len(columns))
    with connection.cursor() as cursor:
        cursor.executemany(
            f'INSERT INTO "{table}" ({", ".join(columns)}) VALUES ({marks})',  # noqa: S608
            rows,
        )


def generate(n_trips: int, n_legs: int, seed: int = 7) -> None:
    from django.contrib.auth.models import User
    from django.db import connection, transaction

    from fahrtenbuch.models import Leg, Trip
    from garage.models import Gear, Road

    rng = random.Random(seed)
    users = [User(username=f"member{i:02d}", password="!") for i in range(60)]
    User.objects.bulk_create(users)
    User.objects.create_superuser("boss", "boss@example.com", "bench-only-password")
    user_ids = list(User.objects.filter(is_staff=False).order_by("id").values_list("id", flat=True))
    # A few people drive most of the trips: member00 about a fifth of them.
    user_weights = [1 / (i + 1) ** 0.9 for i in range(len(user_ids))]
    roads = list(Road.objects.select_related("default_gear").order_by("order"))
    gears = {g.name: g for g in Gear.objects.all()}
    cheap = [g for g in gears.values() if g.tier <= 2 and g.provider.kind != "pruefstand"]
    fmt = connection.ops.adapt_datetimefield_value

    columns, defaults = row_template(Trip, connection)
    now = datetime.now(UTC)
    start = now - timedelta(days=365)
    step = (now - start) / n_trips
    statuses, status_weights = zip(*STATUSES, strict=True)
    started = time.perf_counter()
    batch = 20_000
    for first in range(0, n_trips, batch):
        rows = []
        for i in range(first, min(first + batch, n_trips)):
            road = rng.choices(roads, weights=[3, 5, 4, 1, 2, 2, 1, 1, 1, 2])[0]
            gear = road.default_gear if rng.random() < 0.8 else rng.choice(cheap)
            status = rng.choices(statuses, status_weights)[0]
            if i >= n_trips - 30:
                status = "running" if i % 3 else "queued"
            created = start + step * i
            finished = status not in ("running", "queued")
            latency = int(rng.lognormvariate(8.0, 0.6)) if finished else None
            out_tokens = rng.randint(50, 3000) if status == "succeeded" else 0
            cost = (out_tokens * float(gear.output_price) + 400 * float(gear.input_price)) / 1e6
            values = {
                **defaults,
                "user_id": rng.choices(user_ids, user_weights)[0],
                "task": f"{rng.choice(VERBS)} {rng.choice(THINGS)} {rng.choice(PLACES)} #{i}",
                "road": road.slug,
                "gear_id": gear.pk,
                "gear_name": gear.name,
                "throttle": road.throttle,
                "pattern": road.pattern,
                "zone": "green",
                "status": status,
                "input_tokens": 400,
                "output_tokens": out_tokens,
                "cost_usd": f"{cost:.8f}",
                "estimated_cost_usd": f"{cost:.8f}",
                "latency_ms": latency,
                "created_at": fmt(created),
                "started_at": fmt(created) if status != "queued" else None,
                "finished_at": fmt(created + timedelta(milliseconds=latency or 0))
                if finished
                else None,
                "feedback": rng.choice((1, -1)) if rng.random() < 0.03 else None,
            }
            rows.append(tuple(values[c] for c in columns))
        with transaction.atomic():
            insert(connection, Trip._meta.db_table, columns, rows)
    print(f"{n_trips:,} trips inserted in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    leg_columns, leg_defaults = row_template(Leg, connection)
    newest = list(
        Trip.objects.order_by("-id").values_list(
            "id", "gear_id", "gear_name", "status", "latency_ms"
        )[:n_legs]
    )
    for first in range(0, len(newest), batch):
        rows = []
        for trip_id, gear_id, gear_name, status, latency in newest[first : first + batch]:
            leg_status = status if status in ("succeeded", "failed", "cancelled") else "running"
            values = {
                **leg_defaults,
                "trip_id": trip_id,
                "position": 1,
                "gear_id": gear_id,
                "gear_name": gear_name,
                "status": leg_status,
                "attempts": json.dumps([]),
                "latency_ms": latency,
                "ttft_ms": latency // 4 if latency else None,
            }
            rows.append(tuple(values[c] for c in leg_columns))
        with transaction.atomic():
            insert(connection, Leg._meta.db_table, leg_columns, rows)
    print(f"{len(newest):,} legs inserted in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        # The rollups the workers keep when trips settle, built once from the generated log.
        cursor.execute(
            """
            INSERT INTO fahrtenbuch_tachominute (minute, trips, succeeded, failed, input_tokens,
                output_tokens, thinking_tokens, cost_usd, latency_ms_sum)
            SELECT substr(finished_at, 1, 16) || ':00', count(*),
                   sum(status = 'succeeded'), sum(status = 'failed'), sum(input_tokens),
                   sum(output_tokens), sum(thinking_tokens), sum(cost_usd),
                   sum(coalesce(latency_ms, 0))
            FROM fahrtenbuch_trip WHERE status IN ('succeeded', 'failed')
            GROUP BY 1
            """
        )
        cursor.execute(
            """
            INSERT INTO fahrtenbuch_spendday (day, committed_usd, settled_usd)
            SELECT substr(created_at, 1, 10), sum(cost_usd), sum(cost_usd)
            FROM fahrtenbuch_trip WHERE created_at >= %s GROUP BY 1
            """,
            [fmt(now - timedelta(days=40))],
        )
    print(f"Tacho minutes and spend days rolled up in {time.perf_counter() - started:.1f} s")


def measure(runs: int) -> list[tuple[str, str, float, float]]:
    from django.contrib.auth.models import User
    from django.db.models import Count
    from django.test import Client

    from fahrtenbuch.models import Trip

    counts = (
        Trip.objects.values("user_id")
        .annotate(n=Count("id"))
        .order_by("-n")
        .values_list("user_id", "n")
    )
    counts = list(counts)
    busy, light = counts[0], counts[-1]
    admin = User.objects.get(username="boss")
    top = Trip.objects.order_by("-id").values_list("id", flat=True).first()
    late = top - int(top * 0.95)  # a page far back: 95 % of the log is newer
    month_ago = (datetime.now(UTC) - timedelta(days=200)).date()
    pages = [
        ("cockpit", "/"),
        ("history, first page", "/trips/"),
        ("history, road + status filter", "/trips/?road=konvoi&status=failed"),
        ("history, gear filter", "/trips/?gear=claude-opus"),
        ("history, date range", f"/trips/?since={month_ago}&until={month_ago + timedelta(days=6)}"),
        ("history, late page (keyset)", f"/trips/?before={late}"),
        ("history, search hit", "/trips/?q=billing"),
    ]
    people = [
        (f"member ({busy[1]:,} trips)", User.objects.get(pk=busy[0])),
        (f"member ({light[1]:,} trips)", User.objects.get(pk=light[0])),
        ("admin (all trips)", admin),
    ]
    results = []
    for who, user in people:
        client = Client()
        client.force_login(user)
        for name, url in pages:
            for _ in range(3):
                assert client.get(url).status_code == 200, url
            timings = []
            for _ in range(runs):
                began = time.perf_counter()
                response = client.get(url)
                timings.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200
            results.append((who, name, statistics.median(timings), percentile(timings, 95)))
            print(f"{who:24} {name:32} p50 {results[-1][2]:7.1f} ms   p95 {results[-1][3]:7.1f} ms")
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trips", type=int, default=1_000_000)
    parser.add_argument("--legs", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--reuse", action="store_true", help="measure an existing data dir")
    args = parser.parse_args()
    hosts = os.environ.get("CLUTCH_ALLOWED_HOSTS", "127.0.0.1,localhost")
    os.environ["CLUTCH_ALLOWED_HOSTS"] = hosts + ",testserver"
    data = django_in_tempdir("clutch-bench-pages-")
    from fahrtenbuch.models import Trip

    print(f"data dir {data}")
    if not (args.reuse and Trip.objects.exists()):
        generate(args.trips, args.legs)
    print(f"{Trip.objects.count():,} trips in the database; {args.runs} renders per page")
    measure(args.runs)


if __name__ == "__main__":
    main()
