"""Scale-out: PostgreSQL from CLUTCH_DATABASE_URL, Huey and the channel layer on CLUTCH_REDIS_URL.

`make scaleout-test` sets both variables; without them these tests are skipped.
"""

import asyncio
import os
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection

from garage.defaults import import_defaults
from garage.models import Budget, Gear, Road

pytestmark = pytest.mark.scaleout


@pytest.fixture
def postgresql() -> None:
    if not os.environ.get("CLUTCH_DATABASE_URL"):
        pytest.skip("CLUTCH_DATABASE_URL is not set (make scaleout-test sets it)")


@pytest.fixture
def redis() -> None:
    if not os.environ.get("CLUTCH_REDIS_URL"):
        pytest.skip("CLUTCH_REDIS_URL is not set (make scaleout-test sets it)")


def test_the_database_is_postgresql(postgresql, db):
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        assert cursor.fetchone()[0].startswith("PostgreSQL")


def test_default_import_works_on_postgresql(postgresql, db, settings):
    first = import_defaults(settings.CLUTCH_CONFIG_DIR)
    Road.objects.filter(slug="feldweg").update(throttle=0.9)
    second = import_defaults(settings.CLUTCH_CONFIG_DIR)

    assert first.created == Gear.objects.count() + Road.objects.count() + 9  # + 7 providers + 2
    assert Road.objects.count() == 10
    assert Budget.objects.get().monthly_limit_usd == 500
    assert (second.created, second.updated, second.kept) == (0, 0, 1)
    assert Road.objects.get(slug="feldweg").throttle == 0.9


def test_huey_uses_redis(redis, settings):
    from huey import RedisHuey
    from huey.contrib.djhuey import HUEY

    key = f"clutch-test-{uuid.uuid4().hex}"
    HUEY.put(key, {"ok": True})

    assert settings.HUEY["huey_class"] == "huey.RedisHuey"
    assert isinstance(HUEY, RedisHuey)
    assert HUEY.get(key) == {"ok": True}


def test_channel_layer_message_comes_back_through_redis(redis):
    from channels_redis.core import RedisChannelLayer

    layer = get_channel_layer()
    group = f"clutch-test-{uuid.uuid4().hex}"
    message = {"type": "trip.update", "text": "Etappe 1 fertig"}

    async def round_trip() -> dict:
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        try:
            await layer.group_send(group, message)
            return await asyncio.wait_for(layer.receive(channel), timeout=5)
        finally:
            await layer.group_discard(group, channel)
            await layer.close_pools()

    assert isinstance(layer, RedisChannelLayer)
    assert async_to_sync(round_trip)() == message
