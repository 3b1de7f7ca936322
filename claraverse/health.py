"""Dependency checks behind `GET /health` (CONTRACT §14)."""

from __future__ import annotations

import contextlib
import logging
import secrets

from django.conf import settings
from django.core.cache import cache
from django.db import connection

logger = logging.getLogger("claraverse.health")

OK = "ok"
DOWN = "down"


DATABASE_CHECK_TIMEOUT_SECONDS = 2.0


def check_database() -> str:
    """Run a trivial query on the default database."""
    try:
        pool = getattr(connection, "pool", None)
        if pool is not None and connection.connection is None:
            # Through the pool, but a probe must not wait DATABASE_POOL_TIMEOUT for a connection while the
            # database is down: load balancers give up sooner and would see a timeout instead of a 503.
            pool.open()
            with pool.connection(timeout=DATABASE_CHECK_TIMEOUT_SECONDS) as conn:
                conn.execute("SELECT 1").fetchone()
            return OK
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        logger.warning("health: database unreachable: %s", exc.__class__.__name__)
        # Drop a broken connection so that the next request reconnects.
        with contextlib.suppress(Exception):
            connection.close_if_unusable_or_obsolete()
        return DOWN
    return OK


def check_cache() -> str:
    """Write and read back a short-lived key."""
    key = f"health:{secrets.token_hex(4)}"
    try:
        cache.set(key, "1", timeout=5)
        value = cache.get(key)
        cache.delete(key)
    except Exception as exc:
        logger.warning("health: cache unreachable: %s", exc.__class__.__name__)
        return DOWN
    return OK if value == "1" else DOWN


def check_broker() -> str:
    """Open (and release) a connection to the Celery broker; `ok` for the in-process broker."""
    if settings.CELERY_BROKER_URL.startswith("memory://"):
        return OK
    from kombu import Connection

    try:
        # A fresh connection, not the app's producer pool: a health probe must not disturb real traffic.
        # One attempt: kombu sleeps 2 s before any retry, which would make every probe slow while Redis is down.
        with Connection(settings.CELERY_BROKER_URL, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=0, timeout=2)
    except Exception as exc:
        logger.warning("health: broker unreachable: %s", exc.__class__.__name__)
        return DOWN
    return OK


def health_report() -> tuple[dict[str, str], bool]:
    """All checks, and whether the database (without which nothing works) is up."""
    checks = {"database": check_database(), "cache": check_cache(), "broker": check_broker()}
    return checks, checks["database"] == OK
