"""Doorbells: one process waits on a Unix datagram socket, another rings it with a byte.

Used where a process would otherwise poll the database: idle Huey workers wait for an enqueue
(clutch_site/queue.py), and ``POST /api/run`` waits for its trip to finish (fahrtenbuch/api.py).
The sockets live in a directory of the temp dir named after what the processes share (the queue
file, the database), so only processes on one machine hear each other. A waiter always looks
at the database again when its wait times out: a missed ring costs time, never a result.
"""

import contextlib
import hashlib
import socket
import tempfile
from pathlib import Path


class Doorbells:
    def __init__(self, shared: str) -> None:
        digest = hashlib.sha256(shared.encode()).hexdigest()[:12]
        # Short: Unix socket paths are limited to about 100 bytes.
        self.directory = Path(tempfile.gettempdir()) / f"clutch-{digest}"

    def listen(self, name: str) -> socket.socket:
        """A non-blocking socket that hears rings for ``name``; close it with ``hang_up``."""
        self.directory.mkdir(mode=0o700, exist_ok=True)
        path = self.directory / f"{name}.sock"
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        sock.setblocking(False)
        return sock

    @staticmethod
    def hang_up(sock: socket.socket) -> None:
        path = sock.getsockname()
        sock.close()
        with contextlib.suppress(OSError):
            Path(path).unlink()

    def ring(self, pattern: str) -> int:
        """Send one byte to every listener whose name matches ``pattern`` (a glob); returns
        how many heard it. A listener whose process died is removed."""
        try:
            listeners = list(self.directory.glob(f"{pattern}.sock"))
        except OSError:
            return 0
        heard = 0
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sender.setblocking(False)
            for path in listeners:
                try:
                    sender.sendto(b"!", str(path))
                    heard += 1
                except (ConnectionRefusedError, FileNotFoundError):
                    path.unlink(missing_ok=True)  # nobody is listening there any more
                except OSError:
                    heard += 1  # its buffer is full of rings already: it will wake
        return heard


def trip_bells() -> Doorbells:
    """The bells of trips finishing, shared by the processes that use one database."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    return Doorbells(f"trips:{db.get('HOST', '')}:{db.get('PORT', '')}:{db['NAME']}")
