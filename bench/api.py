"""POST /api/run against the Prüfstand with zero simulated latency: clutch's own overhead.

Run: .venv/bin/python bench/api.py [--requests 200] [--concurrency 8]
Starts Daphne and a Huey consumer (as `make run` does) on a throwaway SQLite data dir, then
times sequential runs (p50/p95 of the whole round trip: HTTP, decision, queue, worker, trip
log, budget ledger, result) and the trips per second with several clients at once (one
thread and one keep-alive connection each; httpx's blocking client, whose own share of the
round trip is smaller than its asyncio client's).
"""

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from _setup import ROOT, django_in_tempdir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def timed_runs(client: httpx.Client, count: int, task: str) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.post("/api/run", json={"task": task, "wait_s": 30})
        times.append((time.perf_counter() - started) * 1000)
        trip = response.json().get("trip") or {}
        assert response.status_code == 200 and trip.get("status") == "succeeded", response.text
    return times


def measure(base: str, token: str, requests: int, concurrency: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    task = "Fix the typo in the README"
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        timed_runs(client, 20, task)  # warm up
        sequential = timed_runs(client, requests, task)
    print(
        f"sequential /api/run × {requests}: p50 {percentile(sequential, 50):.1f} ms, "
        f"p95 {percentile(sequential, 95):.1f} ms, mean {statistics.fmean(sequential):.1f} ms"
    )
    per_client = max(1, requests // concurrency)

    def one_client(_: int) -> list[float]:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            return timed_runs(client, per_client, task)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        batches = list(pool.map(one_client, range(concurrency)))
    elapsed = time.perf_counter() - started
    flat = [t for b in batches for t in b]
    print(
        f"{concurrency} clients × {per_client}: {len(flat) / elapsed:.1f} trips/s, "
        f"p50 {percentile(flat, 50):.1f} ms, p95 {percentile(flat, 95):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    data = django_in_tempdir()
    from django.contrib.auth import get_user_model

    from clutch_site.services import api_token_create
    from garage.models import FitnessCriteria

    FitnessCriteria.objects.update(epsilon_start=0)
    user = get_user_model().objects.create_user("bench", password="bench-password-123")
    _, token = api_token_create(user=user, name="bench")
    port = free_port()
    env = {
        **os.environ,
        "CLUTCH_DATA_DIR": str(data),
        "CLUTCH_PRUEFSTAND_LATENCY": "0",
        "CLUTCH_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(
        [sys.executable, "manage.py", "cockpit", "--port", str(port)],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/login/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the cockpit did not start")
            time.sleep(0.2)
        print(f"data dir {data}; cockpit on {base}")
        measure(base, token, args.requests, args.concurrency)
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
