"""SqliteHuey that wakes its workers instead of making them poll.

Plain SqliteHuey workers poll the queue table and sleep between polls, so a new trip waits
for the next poll (tens of milliseconds) and idle workers keep reading the database. Here each
consumer process listens on a Unix datagram socket in a directory shared through the queue
file's name; ``enqueue`` sends one byte to every listener, and an idle worker blocks on its
socket (up to a second, then looks at the table anyway). A worker that died leaves its socket
behind; the first enqueue that finds nobody listening removes it.
"""

import contextlib
import hashlib
import os
import select
import socket
import tempfile
import threading
from pathlib import Path

from huey import Huey
from huey.storage import SqliteStorage


class WakeableSqliteStorage(SqliteStorage):
    blocking = True  # dequeue() waits by itself: the consumer does not sleep between polls

    def __init__(
        self, name="huey", filename="huey.db", *, read_timeout: float = 1.0, **kwargs
    ) -> None:
        super().__init__(name=name, filename=filename, **kwargs)
        digest = hashlib.sha256(str(Path(filename).resolve()).encode()).hexdigest()[:12]
        # Short and shared: Unix socket paths are limited to about 100 bytes.
        self.wake_dir = Path(tempfile.gettempdir()) / f"clutch-wake-{digest}"
        self.read_timeout = read_timeout
        self._socket: socket.socket | None = None
        self._socket_lock = threading.Lock()

    def _listener(self) -> socket.socket:
        with self._socket_lock:
            if self._socket is None:
                self.wake_dir.mkdir(mode=0o700, exist_ok=True)
                path = self.wake_dir / f"{os.getpid()}.sock"
                path.unlink(missing_ok=True)
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.bind(str(path))
                sock.setblocking(False)
                self._socket = sock
            return self._socket

    def _wake(self) -> None:
        try:
            listeners = list(self.wake_dir.glob("*.sock"))
        except OSError:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sender.setblocking(False)
            for path in listeners:
                try:
                    sender.sendto(b"!", str(path))
                except (ConnectionRefusedError, FileNotFoundError):
                    path.unlink(missing_ok=True)  # its worker is gone
                except OSError:
                    continue  # its buffer is full of wake-ups already: it is awake

    def enqueue(self, data, priority=None) -> None:
        super().enqueue(data, priority)
        self._wake()

    def dequeue(self):
        data = super().dequeue()
        if data is not None:
            return data
        sock = self._listener()
        readable, _, _ = select.select([sock], [], [], self.read_timeout)
        if readable:
            with contextlib.suppress(BlockingIOError):
                sock.recv(64)
        return super().dequeue()


class WakeableSqliteHuey(Huey):
    storage_class = WakeableSqliteStorage
