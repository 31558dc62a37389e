"""Writes for accounts: API tokens and the first admin login."""

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.db import transaction
from django.utils import timezone

from clutch_site.models import ApiToken, token_digest


def api_token_create(*, user: AbstractUser, name: str) -> tuple[ApiToken, str]:
    """Create a token for ``user``; returns the row and the raw token, which is never stored."""
    token = ApiToken(user=user, name=name or "API token")
    raw = token.issue_secret()
    token.save()
    return token, raw


def api_token_authenticate(*, raw: str) -> AbstractUser | None:
    """The active user behind a raw token, or None for an unknown, revoked or expired one."""
    if not raw:
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(digest=token_digest(raw.strip()), revoked=False)
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.expires_at is not None and token.expires_at <= now:
        return None
    # One write a minute at most per token, not one per request.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


@transaction.atomic
def admin_ensure(*, username: str = "admin", password: str | None = None) -> str | None:
    """Make sure an admin login exists.

    Returns the password when this call created the admin (generated unless given), or None
    when a superuser already existed: an existing password is never touched.
    """
    User = get_user_model()
    if User.objects.filter(is_superuser=True).exists():
        return None
    password = password or secrets.token_urlsafe(12)
    user = User.objects.filter(username=username).first()
    if user is None:
        User.objects.create_superuser(username=username, email="", password=password)
    else:
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save(update_fields=["is_staff", "is_superuser", "is_active", "password"])
    return password
