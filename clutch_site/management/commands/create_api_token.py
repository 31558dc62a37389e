from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from clutch_site.services import api_token_create


class Command(BaseCommand):
    help = "Create an API token for USERNAME and print it once (only its digest is stored)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="command line", help="What the token is for.")

    def handle(self, *args, username: str, name: str, **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}. Create one in the admin first.")
        if not user.is_active:
            raise CommandError(f"User {username!r} is inactive; activate it in the admin first.")
        _, raw = api_token_create(user=user, name=name)
        self.stdout.write(raw)
        self.stderr.write(
            "Store this token now: it is shown only once. Send it as 'Authorization: Bearer <token>'."
        )
