"""API tokens: one or more per user, stored as a SHA-256 digest, shown in clear once."""

import hashlib
import secrets

from django.conf import settings
from django.db import models

TOKEN_PREFIX = "clutch_"  # noqa: S105  (a label, not a secret)


def token_digest(raw: str) -> str:
    # Tokens are 256 random bits, so a fast hash is enough: there is nothing to brute-force,
    # and lookups by digest stay a single indexed query per request.
    return hashlib.sha256(raw.encode()).hexdigest()


def new_raw_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(
        max_length=80, help_text="What the token is for, e.g. 'nightly script'."
    )
    prefix = models.CharField(
        max_length=16, editable=False, help_text="First characters, to recognise it."
    )
    # Authentication looks tokens up by digest: WHERE digest = ? (unique index)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name}, {self.user})"

    def issue_secret(self) -> str:
        """Give this token a new secret; returns it in clear, the only time it exists so."""
        raw = new_raw_token()
        self.prefix, self.digest = raw[:12], token_digest(raw)
        return raw
