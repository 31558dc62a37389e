"""The MotorBlock's own overhead over a bare httpx request to the same local server.

Run: .venv/bin/python bench/motorblock.py [--calls 2000] [--concurrency 20]

A separate process serves Anthropic's Messages API on 127.0.0.1 (a raw asyncio server, so the
server is never the bottleneck). We time, in one event loop:
- bare:   httpx POST + reading the SSE body line by line, nothing parsed;
- clutch: garage.motorblock.anthropic.call(): request building, the pooled client, SSE parsing,
  usage, cost, timings and error checks.
"plain" is a short answer (one text delta), "streamed" a 100-delta answer. The overhead is the
difference of the per-call medians; calls/s is measured at the given concurrency.
"""

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def anthropic_stream(deltas: int) -> bytes:
    parts = [
        sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_bench",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": "bench",
                    "stop_reason": None,
                    "usage": {"input_tokens": 12, "output_tokens": 1},
                },
            },
        ),
        sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
    ]
    for i in range(deltas):
        parts.append(
            sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": f"word{i} "},
                },
            )
        )
    parts += [
        sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": deltas},
            },
        ),
        sse("message_stop", {"type": "message_stop"}),
    ]
    return b"".join(parts)


BODIES = {1: anthropic_stream(1), 100: anthropic_stream(100)}


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = json.loads(await reader.readexactly(length)) if length else {}
            payload = BODIES[100 if body.get("max_tokens", 0) >= 100 else 1]
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"content-length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def serve(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=512)
    async with server:
        await server.serve_forever()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def bench(port: int, calls: int, concurrency: int) -> None:
    import httpx

    from garage.engine.gas import gas_geben
    from garage.engine.types import GearSpec
    from garage.motorblock import anthropic
    from garage.motorblock.base import Anfrage, ProviderConfig

    base = f"http://127.0.0.1:{port}"
    provider = ProviderConfig(
        name="bench",
        kind="anthropic",
        base_url=base,
        api_key="sk-bench",
        max_concurrency=concurrency,
    )
    gear = GearSpec(
        name="bench",
        provider="bench",
        provider_kind="anthropic",
        model_id="bench",
        tier=3,
        input_price=Decimal("3"),
        output_price=Decimal("15"),
        max_output_tokens=64000,
        reasoning="none",
    )
    bare_client = httpx.AsyncClient(
        limits=httpx.Limits(
            max_connections=concurrency * 4, max_keepalive_connections=concurrency * 4
        )
    )

    def anfrage(max_tokens: int) -> Anfrage:
        gas = gas_geben(gear, 0.0)
        gas = type(gas)(
            **{**gas.as_dict(), "system_prompt": gas.system_prompt, "max_output_tokens": max_tokens}
        )
        return Anfrage(
            gear=gear,
            messages=({"role": "user", "content": "Say hi"},),
            gas=gas,
            system="Be brief.",
            provider=provider,
        )

    requests = {1: anfrage(16), 100: anfrage(512)}

    async def bare(deltas: int) -> None:
        body = anthropic.request_body(requests[deltas])
        async with bare_client.stream(
            "POST",
            f"{base}/v1/messages",
            json=body,
            headers={"x-api-key": "sk-bench", "anthropic-version": "2023-06-01"},
        ) as r:
            async for _ in r.aiter_lines():
                pass

    async def clutch(deltas: int) -> None:
        answer = await anthropic.call(requests[deltas], lambda kind, text: None)
        assert answer.usage.output_tokens == deltas

    async def sequential(fn, deltas: int) -> list[float]:
        times = []
        for _ in range(calls):
            t = time.perf_counter()
            await fn(deltas)
            times.append((time.perf_counter() - t) * 1000)
        return times

    async def parallel(fn, deltas: int) -> float:
        queue = iter(range(calls))

        async def worker() -> None:
            for _ in queue:
                await fn(deltas)

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return calls / (time.perf_counter() - t)

    for deltas, label in ((1, "plain"), (100, "streamed")):
        for fn in (bare, clutch):  # warm up both: connections, imports, caches
            for _ in range(50):
                await fn(deltas)
        b = await sequential(bare, deltas)
        c = await sequential(clutch, deltas)
        overhead = statistics.median(c) - statistics.median(b)
        print(
            f"{label:8} sequential: bare p50 {statistics.median(b):.3f} ms, clutch p50 {statistics.median(c):.3f} ms "
            f"(p95 {percentile(c, 95):.3f}) → overhead {overhead:.3f} ms per call"
        )
        rb = await parallel(bare, deltas)
        rc = await parallel(clutch, deltas)
        print(
            f"{label:8} concurrency {concurrency}: bare {rb:.0f} calls/s, clutch {rc:.0f} calls/s"
        )
    await bare_client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)], start_new_session=True
    )
    try:
        time.sleep(0.5)
        asyncio.run(bench(port, args.calls, args.concurrency))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()


if __name__ == "__main__":
    main()
