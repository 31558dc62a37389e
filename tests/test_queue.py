"""The embedded queue: an enqueue wakes a waiting worker at once instead of at its next poll."""

import threading
import time

from clutch_site.queue import WakeableSqliteHuey


def test_enqueue_wakes_a_blocked_dequeue_at_once(tmp_path):
    huey = WakeableSqliteHuey("wake-test", filename=str(tmp_path / "q.sqlite3"))
    storage = huey.storage
    storage.read_timeout = 5.0
    got: list[float] = []

    def worker() -> None:
        started = time.monotonic()
        while time.monotonic() - started < 5:
            if storage.dequeue() is not None:
                got.append(time.monotonic())
                return

    thread = threading.Thread(target=worker)
    thread.start()
    time.sleep(0.3)  # the worker is now blocked in select()
    sent = time.monotonic()
    storage.enqueue(b"payload")
    thread.join(timeout=5)
    assert got, "the worker never got the task"
    assert got[0] - sent < 0.2, "woken by the enqueue, not by its one-second timeout"


def test_a_dead_listener_is_removed_by_the_next_enqueue(tmp_path):
    huey = WakeableSqliteHuey("wake-test", filename=str(tmp_path / "q.sqlite3"))
    storage = huey.storage
    storage.bells.directory.mkdir(parents=True, exist_ok=True)
    stale = storage.bells.directory / "worker-999999.sock"
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(stale))
    storage.enqueue(b"x")  # nobody listens on the stale socket any more
    assert not stale.exists()
    assert storage.dequeue() == b"x"
