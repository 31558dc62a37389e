from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from garage.defaults import ConfigError, import_defaults


class Command(BaseCommand):
    help = (
        "Import the default tables (providers, gears, roads, budget, fitness criteria) from "
        "config/. Rows an admin has edited or deleted are kept as they are, unless --reset."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--config-dir", type=Path, default=settings.CLUTCH_CONFIG_DIR)
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Overwrite every default row with the file's values, admin edits included.",
        )

    def handle(self, *args, config_dir: Path, reset: bool, **options) -> None:
        try:
            report = import_defaults(config_dir, reset=reset)
        except ConfigError as exc:
            raise CommandError(f"Default tables not imported, nothing changed. {exc}") from None
        self.stdout.write(f"Default tables imported from {config_dir}: {report}.")
