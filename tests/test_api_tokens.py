"""API tokens: stored as a SHA-256 digest, shown in clear once, refused when revoked or expired."""

import hashlib
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone

from clutch_site.models import ApiToken
from clutch_site.services import api_token_authenticate, api_token_create

pytestmark = pytest.mark.scaleout


def test_token_row_holds_digest_and_prefix_never_the_raw_token(member):
    token, raw = api_token_create(user=member, name="nightly script")

    row = ApiToken.objects.filter(pk=token.pk).values().get()
    assert row["digest"] == hashlib.sha256(raw.encode()).hexdigest()
    assert row["prefix"] == raw[:12]
    assert raw.startswith("clutch_")
    assert len(raw) > 40
    assert [column for column, value in row.items() if raw in str(value)] == []


def test_two_tokens_differ(member):
    first = api_token_create(user=member, name="a")
    second = api_token_create(user=member, name="a")

    assert first[1] != second[1]
    assert first[0].digest != second[0].digest


def test_authenticate_returns_the_tokens_user(member, outsider):
    _, raw = api_token_create(user=member, name="cli")
    api_token_create(user=outsider, name="cli")

    assert api_token_authenticate(raw=raw) == member
    assert api_token_authenticate(raw=f"  {raw}\n") == member


def test_authenticate_accepts_a_token_before_its_expiry(member):
    token, raw = api_token_create(user=member, name="cli")
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() + timedelta(hours=1))

    assert api_token_authenticate(raw=raw) == member


def _wrong(token: ApiToken, raw: str) -> str:
    return raw + "x"


def _empty(token: ApiToken, raw: str) -> str:
    return ""


def _digest_instead_of_token(token: ApiToken, raw: str) -> str:
    return token.digest


def _revoked(token: ApiToken, raw: str) -> str:
    ApiToken.objects.filter(pk=token.pk).update(revoked=True)
    return raw


def _expired(token: ApiToken, raw: str) -> str:
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    return raw


def _inactive_user(token: ApiToken, raw: str) -> str:
    token.user.is_active = False
    token.user.save(update_fields=["is_active"])
    return raw


@pytest.mark.parametrize(
    "spoil",
    [_wrong, _empty, _digest_instead_of_token, _revoked, _expired, _inactive_user],
    ids=lambda spoil: spoil.__name__.strip("_"),
)
def test_authenticate_refuses(member, spoil):
    token, raw = api_token_create(user=member, name="cli")
    presented = spoil(token, raw)

    assert api_token_authenticate(raw=presented) is None
    assert ApiToken.objects.get(pk=token.pk).last_used_at is None


def test_last_used_at_is_written_at_most_once_a_minute(member):
    token, raw = api_token_create(user=member, name="cli")
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    with time_machine.travel(start, tick=False) as clock:
        api_token_authenticate(raw=raw)
        assert ApiToken.objects.get(pk=token.pk).last_used_at == start

        clock.shift(timedelta(seconds=30))
        api_token_authenticate(raw=raw)
        assert ApiToken.objects.get(pk=token.pk).last_used_at == start

        clock.shift(timedelta(seconds=31))
        api_token_authenticate(raw=raw)
        assert ApiToken.objects.get(pk=token.pk).last_used_at == start + timedelta(seconds=61)


def _create_api_token(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("create_api_token", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_create_api_token_command_prints_a_working_token_once(member):
    out, err = _create_api_token(member.username, "--name", "deploy bot")

    raw = out.strip()
    assert out.count(raw) == 1
    assert raw not in err
    assert "shown only once" in err
    assert api_token_authenticate(raw=raw) == member
    token = ApiToken.objects.get(user=member)
    assert (token.name, token.digest) == ("deploy bot", hashlib.sha256(raw.encode()).hexdigest())


def test_create_api_token_command_refuses_an_unknown_user(db):
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        _create_api_token("ghost")

    assert ApiToken.objects.count() == 0


def test_create_api_token_command_refuses_an_inactive_user(member):
    member.is_active = False
    member.save(update_fields=["is_active"])

    with pytest.raises(CommandError, match="User 'mia' is inactive"):
        _create_api_token("mia")

    assert ApiToken.objects.count() == 0
