"""Test settings: the base settings with speed overrides only.

The suite runs on the embedded default (SQLite, local-memory cache) or, when DATABASE_URL and
REDIS_URL are set (as in CI), on PostgreSQL and Redis.
"""

import os
import tempfile

# Fixed, non-default keys so that the suite runs with DEBUG off like production does.
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-4f1e2d3c")
os.environ.setdefault("ENCRYPTION_KEYS", "dGVzdC1vbmx5LWVuY3J5cHRpb24ta2V5LTAxMjM0NTY=")
os.environ.setdefault("ENV_FILE", "")  # the suite ignores a developer's .env
os.environ.setdefault("DATA_DIR", os.path.join(tempfile.gettempdir(), "claraverse-test-data"))

from .base import *  # noqa: F403
from .base import CACHES, DATABASES, REDIS_URL

# Argon2 at production cost makes every user fixture slow; the hasher choice is tested apart.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *PASSWORD_HASHERS]  # noqa: F405

# A file-backed SQLite test database, so that a subprocess (e.g. a worker killed in a test) can share it.
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-{os.getpid()}.sqlite3")}  # noqa: F405

# Django's test database cannot be created through a connection pool.
if "pool" in DATABASES["default"].get("OPTIONS", {}):
    DATABASES["default"]["OPTIONS"].pop("pool")

# Each pytest-xdist worker gets its own Redis database so that cache clears do not collide.
if REDIS_URL:
    _worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or "0"
    _base = REDIS_URL.rsplit("/", 1)[0] if REDIS_URL.count("/") > 2 else REDIS_URL.rstrip("/")
    CACHES["default"]["LOCATION"] = f"{_base}/{1 + int(_worker)}"
    CACHES["default"]["KEY_PREFIX"] = "cvtest"

STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405 - whitenoise warns when it is missing
CELERY_TASK_ALWAYS_EAGER = True
# Eager executions run inside the test's transaction, which a writer thread's own connection cannot
# see; tests/executions/test_event_writer.py covers the background writer with committed rows.
EXECUTION_EVENTS_IN_BACKGROUND = False
CELERY_TASK_EAGER_PROPAGATES = True
EMBEDDED_WORKER = False
ALLOWED_HOSTS = ["*"]
LOGGING["root"]["level"] = "WARNING"  # noqa: F405

# Test-only models that exercise shared machinery (e.g. encrypted fields) before real apps use it.
INSTALLED_APPS = [*INSTALLED_APPS, "tests.support"]  # noqa: F405
