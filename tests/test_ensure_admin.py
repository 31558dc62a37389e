"""ensure_admin: the first login, with a generated password shown once and never a fixed one."""

import re
from io import StringIO

from django.contrib.auth import authenticate
from django.core.management import call_command


def _ensure_admin(*args: str) -> str:
    out = StringIO()
    call_command("ensure_admin", *args, stdout=out)
    return out.getvalue()


def _printed_password(output: str) -> str:
    match = re.search(r"^\s*password:\s*(\S+)\s*$", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def test_first_run_creates_a_superuser_and_prints_a_working_password(django_user_model):
    output = _ensure_admin()

    password = _printed_password(output)
    assert output.count(password) == 1
    assert "shown only this once" in output
    admin = django_user_model.objects.get()
    assert (admin.username, admin.is_superuser, admin.is_staff, admin.is_active) == (
        "admin",
        True,
        True,
        True,
    )
    assert authenticate(username="admin", password=password) == admin
    assert len(password) >= 16


def test_second_run_leaves_the_password_alone(django_user_model):
    password = _printed_password(_ensure_admin())
    hashed = django_user_model.objects.get().password

    output = _ensure_admin()

    assert output.strip() == "Admin login exists; its password is unchanged."
    assert django_user_model.objects.get().password == hashed
    assert authenticate(username="admin", password=password) is not None


def test_admin_password_from_the_environment(django_user_model, monkeypatch):
    monkeypatch.setenv("CLUTCH_ADMIN_PASSWORD", "from-the-environment-42")

    output = _ensure_admin("--username", "boss")

    assert "from-the-environment-42" not in output
    assert "CLUTCH_ADMIN_PASSWORD" in output
    boss = django_user_model.objects.get(username="boss")
    assert boss.is_superuser
    assert authenticate(username="boss", password="from-the-environment-42") == boss


def test_an_existing_regular_user_named_admin_is_promoted(django_user_model):
    django_user_model.objects.create_user(username="admin", password="old-password-1")

    password = _printed_password(_ensure_admin())

    admin = django_user_model.objects.get()
    assert (admin.is_superuser, admin.is_staff) == (True, True)
    assert authenticate(username="admin", password=password) == admin
    assert authenticate(username="admin", password="old-password-1") is None


def test_two_fresh_databases_get_different_passwords(django_user_model):
    first = _printed_password(_ensure_admin())
    django_user_model.objects.all().delete()  # as good as a fresh database

    second = _printed_password(_ensure_admin())

    assert first != second
    assert authenticate(username="admin", password=second) is not None
    assert authenticate(username="admin", password=first) is None
