"""A local HTTP server on 127.0.0.1 that tests script to speak a provider's wire format.

Each test queues responses; the server records every request (method, path, query, headers,
JSON body) so the test can check what the client sent. Streams are written with chunked
transfer encoding, event by event, and can be cut off before their end or delayed before the
first byte, like a real provider under stress.
"""

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict | list | None = None  # a whole body (JSON when dict/list)
    chunks: list[bytes | str] = field(default_factory=list)  # a streamed body, one write each
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    delay_first_byte_s: float = 0.0
    delay_between_s: float = 0.0
    cut_after: int | None = None  # drop the connection after this many chunks


@dataclass
class Seen:
    method: str
    path: str
    query: dict
    headers: dict
    body: dict | None
    raw: bytes


def sse(event: str | None, data: dict | str) -> str:
    payload = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n"


class FakeServer:
    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.default: Reply | None = None
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                parts = urlsplit(self.path)
                with server.lock:
                    server.seen.append(
                        Seen(
                            self.command,
                            parts.path,
                            parse_qs(parts.query),
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            raw,
                        )
                    )
                    reply = server.replies.pop(0) if server.replies else server.default
                if reply is None:
                    reply = Reply(500, {"error": "no reply scripted"})
                server._write(self, reply)

            do_GET = do_POST = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def reply(self, *replies: Reply) -> None:
        with self.lock:
            self.replies.extend(replies)

    @staticmethod
    def _write(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        if reply.delay_first_byte_s:
            time.sleep(reply.delay_first_byte_s)
        try:
            handler.send_response(reply.status)
            handler.send_header("content-type", reply.content_type)
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            if not reply.chunks:
                body = reply.body
                if isinstance(body, dict | list):
                    data = json.dumps(body).encode()
                elif isinstance(body, str):
                    data = body.encode()
                else:
                    data = body or b""
                handler.send_header("content-length", str(len(data)))
                handler.end_headers()
                handler.wfile.write(data)
                return
            handler.send_header("transfer-encoding", "chunked")
            handler.end_headers()
            for i, chunk in enumerate(reply.chunks):
                if reply.cut_after is not None and i >= reply.cut_after:
                    handler.wfile.flush()
                    handler.close_connection = True
                    handler.connection.shutdown(2)
                    return
                data = chunk.encode() if isinstance(chunk, str) else chunk
                handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                handler.wfile.flush()
                if reply.delay_between_s:
                    time.sleep(reply.delay_between_s)
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass


def unused_url() -> str:
    """The URL of a local port nothing listens on: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
