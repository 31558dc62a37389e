"""Group commit of concurrent legs' writes: batches by kind, errors to every caller of a
rolled-back batch, and a cancelled caller's result handed to the undo."""

import asyncio

import pytest

from garage.fahrt import Sammelfahrt

pytestmark = pytest.mark.django_db(transaction=True)


def test_requests_queued_together_are_handled_as_one_batch_per_kind():
    batches: list[tuple[str, list]] = []

    def handler(kind):
        def handle(payloads):
            batches.append((kind, payloads))
            return [(True, f"{kind}:{p}") for p in payloads]

        return handle

    async def main():
        sammel = Sammelfahrt({"a": handler("a"), "b": handler("b")}, undo={})
        results = await asyncio.gather(*(sammel("a" if i % 2 else "b", i) for i in range(6)))
        await sammel.finish()
        return results

    results = asyncio.run(main())
    assert results == ["b:0", "a:1", "b:2", "a:3", "b:4", "a:5"]
    # All six were queued before the database thread took the first batch: one batch,
    # handled kind by kind.
    assert sorted(batches) == [("a", [1, 3, 5]), ("b", [0, 2, 4])]


def test_a_failing_batch_tells_every_caller_and_a_refusal_only_its_own():
    def handle(payloads):
        if "boom" in payloads:
            raise RuntimeError("database went away")
        return [(p != "no", ValueError("refused") if p == "no" else p) for p in payloads]

    async def main():
        sammel = Sammelfahrt({"x": handle}, undo={})
        first = await asyncio.gather(sammel("x", "ok"), sammel("x", "no"), return_exceptions=True)
        second = await asyncio.gather(
            sammel("x", "fine"), sammel("x", "boom"), return_exceptions=True
        )
        return first, second

    first, second = asyncio.run(main())
    assert first[0] == "ok" and isinstance(first[1], ValueError)
    assert all(isinstance(r, RuntimeError) for r in second)


def test_a_caller_cancelled_while_its_request_ran_has_its_result_undone():
    undone: list = []

    def slow(payloads):
        import time

        time.sleep(0.2)  # the caller's timeout fires meanwhile
        return [(True, f"entry-{p}") for p in payloads]

    async def main():
        sammel = Sammelfahrt({"admit": slow}, undo={"admit": undone.extend})
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sammel("admit", 1), 0.05)
        await sammel.finish()

    asyncio.run(main())
    assert undone == ["entry-1"]
