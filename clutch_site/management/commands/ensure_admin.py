import os

from django.core.management.base import BaseCommand

from clutch_site.services import admin_ensure


class Command(BaseCommand):
    help = (
        "Make sure an admin login exists. On first run it creates 'admin' with a generated "
        "password (or CLUTCH_ADMIN_PASSWORD) and prints it once."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default=os.environ.get("CLUTCH_ADMIN_USER", "admin"))

    def handle(self, *args, username: str, **options) -> None:
        given = os.environ.get("CLUTCH_ADMIN_PASSWORD") or None
        password = admin_ensure(username=username, password=given)
        if password is None:
            self.stdout.write("Admin login exists; its password is unchanged.")
            return
        if given:
            self.stdout.write(
                f"Created admin login '{username}' with the password from CLUTCH_ADMIN_PASSWORD."
            )
            return
        line = "=" * 64
        self.stdout.write(
            f"{line}\n  Admin login created (shown only this once):\n"
            f"    user:     {username}\n    password: {password}\n"
            f"  Change it with: .venv/bin/python manage.py changepassword {username}\n{line}"
        )
