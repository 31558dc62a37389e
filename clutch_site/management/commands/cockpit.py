"""Start the web server (Daphne) and the Huey worker together; Ctrl-C stops both."""

import os
import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the cockpit with Daphne and run the Huey worker beside it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=os.environ.get("CLUTCH_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("CLUTCH_PORT", "8000")))
        parser.add_argument(
            "--workers",
            type=int,
            default=int(os.environ.get("CLUTCH_WORKERS", "4")),
            help="Huey worker threads.",
        )

    def handle(self, *args, host: str, port: int, workers: int, **options) -> None:
        python = sys.executable
        commands = {
            "web": [
                python,
                "-m",
                "daphne",
                "-b",
                host,
                "-p",
                str(port),
                "clutch_site.asgi:application",
            ],
            "worker": [
                python,
                "manage.py",
                "run_huey",
                "--workers",
                str(workers),
                "--worker-type",
                "thread",
            ],
        }
        processes = {name: subprocess.Popen(cmd) for name, cmd in commands.items()}  # noqa: S603
        self.stdout.write(
            f"clutch cockpit on http://{host}:{port}/ (worker: {workers} threads). Ctrl-C stops both."
        )

        stopping = False

        def stop(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code = 0
        while not stopping:
            for name, process in processes.items():
                code = process.poll()
                if code is not None:
                    self.stderr.write(
                        f"The {name} process exited with code {code}; stopping the other."
                    )
                    exit_code = code or 1
                    stopping = True
            time.sleep(0.2)
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        for process in processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
        if exit_code:
            sys.exit(exit_code)
