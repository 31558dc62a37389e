"""SqliteHuey that wakes its workers instead of making them poll.

Plain SqliteHuey workers poll the queue table and sleep between polls, so a new trip waits
for the next poll (tens of milliseconds) and idle workers keep reading the database. Here each
consumer process listens on a Unix datagram socket in a directory shared through the queue
file's name; ``enqueue`` sends one byte to every listener, and an idle worker blocks on its
socket (up to a second, then looks at the table anyway). A worker that died leaves its socket
behind; the first enqueue that finds nobody listening removes it.
"""

import contextlib
import os
import select
import threading
from pathlib import Path

from huey import Huey
from huey.storage import SqliteStorage

from clutch_site.doorbell import Doorbells


class WakeableSqliteStorage(SqliteStorage):
    blocking = True  # dequeue() waits by itself: the consumer does not sleep between polls

    def __init__(
        self, name="huey", filename="huey.db", *, read_timeout: float = 1.0, **kwargs
    ) -> None:
        super().__init__(name=name, filename=filename, **kwargs)
        self.bells = Doorbells(f"queue:{Path(filename).resolve()}")
        self.read_timeout = read_timeout
        self._socket = None
        self._socket_lock = threading.Lock()
        self._listening = threading.Lock()

    def _create_connection(self):
        # Huey leaves SQLite's default (FULL): an fsync per enqueue, about 4 ms here. In WAL
        # mode NORMAL survives a crashed process and loses at most the last commits on power
        # loss; a trip whose task is lost that way is enqueued again by the recovery task.
        conn = super()._create_connection()
        conn.execute("pragma synchronous=NORMAL")
        return conn

    def _listener(self):
        with self._socket_lock:
            if self._socket is None:
                self._socket = self.bells.listen(f"worker-{os.getpid()}")
            return self._socket

    def _wake(self) -> None:
        self.bells.ring("worker-*")

    def enqueue(self, data, priority=None) -> None:
        super().enqueue(data, priority)
        self._wake()

    def dequeue(self):
        data = super().dequeue()
        if data is not None:
            return data
        # One thread of the process listens; the others wait for their turn, so a ring wakes
        # one worker instead of a herd that all race for the same task.
        if not self._listening.acquire(timeout=self.read_timeout):
            return None
        try:
            sock = self._listener()
            readable, _, _ = select.select([sock], [], [], self.read_timeout)
            if readable:
                with contextlib.suppress(BlockingIOError):
                    sock.recv(64)
        finally:
            self._listening.release()
        return super().dequeue()


class WakeableSqliteHuey(Huey):
    storage_class = WakeableSqliteStorage
