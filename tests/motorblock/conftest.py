import pytest

from tests.motorblock.fakeserver import FakeServer


@pytest.fixture
def server():
    fake = FakeServer().start()
    yield fake
    fake.stop()
