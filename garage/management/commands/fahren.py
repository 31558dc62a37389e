import json
import sys
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from fahrtenbuch.services import ApplicationError
from garage.fahrer import Fahrer


class Command(BaseCommand):
    help = "Drive a task (or one task per line of --file): analyse, decide and, unless --dry-run, run it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("task", nargs="?", help="The task text.")
        parser.add_argument("--file", type=Path, help="Read one task per line from this file.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Decide only; no model is called."
        )
        parser.add_argument(
            "--json", action="store_true", help="One JSON object per task per line."
        )
        parser.add_argument("--gear", help="Use this gear (by name).")
        parser.add_argument("--throttle", type=float, help="Reasoning level 0–1.")
        parser.add_argument("--pattern", choices=["single", "convoy", "team", "swarm", "hybrid"])
        parser.add_argument("--tempo", choices=["urgent", "normal", "thorough"])
        parser.add_argument("--user", help="Record the trips under this user name.")
        parser.add_argument(
            "--seed", type=int, help="Seed exploration, for reproducible decisions."
        )

    def handle(self, *args, **opts) -> None:
        tasks = self._tasks(opts)
        user = None
        if opts["user"]:
            user = get_user_model().objects.filter(username=opts["user"]).first()
            if user is None:
                raise CommandError(f"No user named {opts['user']!r}.")
        fahrer = Fahrer(user=user, seed=opts["seed"])
        options = {
            k: opts[k] for k in ("gear", "throttle", "pattern", "tempo") if opts[k] is not None
        }
        failed = False
        for task in tasks:
            try:
                if opts["dry_run"]:
                    result = fahrer.entscheiden(task, **options).as_dict()
                else:
                    stream = None if opts["json"] else self._stream
                    result = fahrer.fahren(task, on_delta=stream, **options).as_dict()
            except ApplicationError as exc:
                if len(tasks) == 1:
                    raise CommandError(exc.message) from None
                result = {"task": task, "error": exc.message, "status": "invalid"}
            failed = (
                failed
                or bool(result.get("refused"))
                or result.get("status") in ("failed", "refused", "invalid")
            )
            self._print(task, result, opts)
        if failed and len(tasks) == 1:
            sys.exit(1)

    def _tasks(self, opts) -> list[str]:
        if opts["file"]:
            try:
                lines = opts["file"].read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise CommandError(f"Cannot read {opts['file']}: {exc.strerror}") from None
            tasks = [line.strip() for line in lines if line.strip()]
            if not tasks:
                raise CommandError(f"{opts['file']} holds no task (one per line).")
            return tasks
        if not opts["task"]:
            raise CommandError(
                'Give a task, e.g. manage.py fahren "Fix the login bug", or --file PATH.'
            )
        return [opts["task"]]

    def _stream(self, text: str) -> None:
        self.stdout.write(text, ending="")
        self.stdout.flush()

    def _print(self, task: str, result: dict, opts) -> None:
        if opts["json"]:
            self.stdout.write(json.dumps({"task": task, **result}, ensure_ascii=False))
            return
        if "error" in result and "road" not in result:
            self.stderr.write(f"✗ {task}: {result['error']}")
            return
        gear = result.get("gear") or {}
        self.stdout.write("")
        self.stdout.write(
            f"road {result['road']} (confidence {result['confidence']:.2f}, difficulty {result['difficulty']:.2f}) · "
            f"gear {gear.get('name', '—')} G{gear.get('tier', '-')}"
            f"{' [simulated]' if gear.get('simulated') else ''} · throttle {result['throttle']:.2f} · "
            f"pattern {result['pattern']} · zone {result['zone']} · est. {result['estimated_cost_usd']} USD"
        )
        for reason in result["reasons"]:
            self.stdout.write(f"  - {reason['step']}: {reason['message']}")
        if result.get("refused"):
            self.stderr.write(f"refused: {result['refused']}")
        if "trip_id" in result:
            usage = result["usage"]
            self.stdout.write(
                f"trip {result['trip_id']} {result['status']} · {usage['input_tokens']} in / "
                f"{usage['output_tokens']} out / {usage['thinking_tokens']} thinking tokens · "
                f"{result['cost_usd']} USD · {result['latency_ms']} ms"
                + (f" · error: {result['error']}" if result.get("error") else "")
            )
