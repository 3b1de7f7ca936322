"""Core plumbing during outages (found by `make faults`): health probes answer quickly, a worker survives Redis
going away, database pools recover promptly."""

import os
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from django.test import override_settings

from claraverse import health


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_broker_check_answers_at_once_when_the_broker_is_down():
    with override_settings(CELERY_BROKER_URL=f"redis://127.0.0.1:{closed_port()}/0"):
        began = time.monotonic()
        assert health.check_broker() == health.DOWN
    assert time.monotonic() - began < 1.0  # kombu's first retry alone would wait 2 s


def test_database_check_waits_briefly_for_a_pooled_connection(monkeypatch):
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(
        f"postgresql://nobody@127.0.0.1:{closed_port()}/none?connect_timeout=1",
        min_size=0,
        max_size=2,
        timeout=30,
        open=False,
    )
    monkeypatch.setattr(health, "connection", SimpleNamespace(pool=pool, connection=None))
    monkeypatch.setattr(health, "DATABASE_CHECK_TIMEOUT_SECONDS", 0.5)
    try:
        began = time.monotonic()
        assert health.check_database() == health.DOWN
        assert time.monotonic() - began < 3  # not the pool's own 30 s
    finally:
        pool.close()


def test_a_closed_redis_channel_raises_a_connection_error_not_attribute_error():
    """kombu 5.7: restoring or acking through a channel whose transport Celery detached after a broker outage."""
    from kombu.transport import redis as kombu_redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    import claraverse.celery  # noqa: F401 - installs the fix

    for transport in (None, SimpleNamespace(client=None)):
        channel = object.__new__(kombu_redis.Channel)
        channel.connection = transport
        with pytest.raises(RedisConnectionError):
            channel._connparams()
    # A connection error is what kombu and Celery already handle as a lost connection.
    assert RedisConnectionError in kombu_redis.Transport.connection_errors


@pytest.mark.skipif(sys.platform != "linux", reason="subprocess environment")
def test_database_pool_checks_connections_and_bounds_reconnect_backoff():
    code = (
        "from django.conf import settings; d = settings.DATABASES['default'];"
        "print(d['CONN_HEALTH_CHECKS'], d['OPTIONS']['pool']['reconnect_timeout'])"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "claraverse.settings.base",
        "ENV_FILE": "",
        "DATABASE_URL": "postgres://u@127.0.0.1:1/x",
        "SECRET_KEY": "x" * 50,
        "ENCRYPTION_KEYS": "dGVzdC1vbmx5LWVuY3J5cHRpb24ta2V5LTAxMjM0NTY=",
    }
    env.pop("DATABASE_POOL_RECONNECT_TIMEOUT", None)
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == ["True", "10.0"]
