"""The middleware as Daphne runs it (ASGI, async mode), where the header-only hooks run
inline: security headers, CSRF, sessions and the login still behave as Django's own."""

import asyncio
import re

import pytest
from django.test import AsyncClient

pytestmark = pytest.mark.django_db(transaction=True)


def _token(text: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', text).group(1)


def test_pages_carry_the_security_headers_and_a_csrf_cookie():
    response = asyncio.run(AsyncClient(enforce_csrf_checks=True).get("/login/"))
    assert response.status_code == 200
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "csrftoken" in response.cookies


def test_a_form_post_without_its_csrf_token_is_refused(member, password):
    async def post():
        client = AsyncClient(enforce_csrf_checks=True)
        await client.get("/login/")
        return await client.post("/login/", {"username": "mia", "password": password})

    assert asyncio.run(post()).status_code == 403


def test_logging_in_with_the_token_opens_a_session(member, password):
    async def log_in():
        client = AsyncClient(enforce_csrf_checks=True)
        page = await client.get("/login/")
        response = await client.post(
            "/login/",
            {"username": "mia", "password": password, "csrfmiddlewaretoken": _token(page.text)},
        )
        return response, (await client.get("/")).status_code, (await client.get("/trips/"))

    response, home, history = asyncio.run(log_in())
    assert (response.status_code, response.url) == (302, "/")
    assert home == 200 and history.status_code == 200


def test_the_api_skips_sessions_and_still_gets_the_security_headers(member):
    from clutch_site.services import api_token_create

    _, token = api_token_create(user=member, name="t")

    async def calls():
        client = AsyncClient()
        gears = await client.get("/api/gears", headers={"Authorization": f"Bearer {token}"})
        docs = await client.get("/api/docs")
        return gears, docs

    gears, docs = asyncio.run(calls())
    assert gears.status_code == 200 and docs.status_code == 200
    assert "sessionid" not in gears.cookies and "csrftoken" not in gears.cookies
    assert gears.headers["X-Content-Type-Options"] == "nosniff"
