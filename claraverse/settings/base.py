"""Settings for every deployment, read from the environment only.

With nothing set this is the embedded default (SQLite in DATA_DIR, in-memory channel layer,
local-memory cache, in-process Celery). `DATABASE_URL` switches to PostgreSQL and `REDIS_URL`
to Redis for the cache, the channel layer and the Celery broker. `.env.example` documents
every variable.
"""

import os
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# A local .env (made by `make run`) is a convenience; real deployments set the environment.
# ENV_FILE names another file, or none when empty. Variables already set always win.
_env_file = os.environ.get("ENV_FILE", str(BASE_DIR / ".env"))
if _env_file and Path(_env_file).is_file():
    env.read_env(_env_file, overwrite=False)

DATA_DIR = Path(env.str("DATA_DIR", default=str(BASE_DIR / "data"))).resolve()

# --- Secrets -------------------------------------------------------------------------------
# The built-in values exist so that `make run` works from a fresh clone. They are public, so a
# server with DEBUG off refuses to start on them (see the check at the end of this module).
DEFAULT_SECRET_KEY = "insecure-development-secret-key-change-me-0123456789"  # noqa: S105 - refused in production
DEFAULT_ENCRYPTION_KEY = "ZGV2ZWxvcG1lbnQtb25seS1lbmNyeXB0aW9uLWtleSE="

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default=DEFAULT_SECRET_KEY)
# Master keys for secrets at rest, newest first, comma-separated (urlsafe base64 of 32 bytes).
# New writes use the first; older keys still decrypt until `manage.py rotate_encryption_keys`.
ENCRYPTION_KEYS = env.list("ENCRYPTION_KEYS", default=[DEFAULT_ENCRYPTION_KEY])

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["*"] if DEBUG else ["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "rest_framework_simplejwt",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_celery_beat",
    "claraverse.apps.CoreConfig",
    "accounts",
    "agents",
    "workflows",
    "executions",
    "memories",
    "integrations",
    "chats",
    "apikeys",
    "uploads",
    "adminpanel",
]

MIDDLEWARE = [
    "claraverse.middleware.RequestIdMiddleware",
    "claraverse.middleware.ErrorEnvelopeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "claraverse.ratelimit.GlobalApiRateLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "claraverse.urls"
ASGI_APPLICATION = "claraverse.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ------------------------------------------------------------------------------
DATABASE_URL = env.str("DATABASE_URL", default="")
if DATABASE_URL:
    _db = env.db_url_config(DATABASE_URL)
    if _db["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_URL must be a postgres:// URL.")
    _db["OPTIONS"] = {
        # psycopg 3 connection pool, shared by the threads of one process.
        "pool": {
            "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=2),
            "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=20),
            "timeout": env.int("DATABASE_POOL_TIMEOUT", default=10),
            # After a failed connection attempt the pool retries with a doubling delay, so a long outage would be
            # followed by as long a wait; giving up after this many seconds starts the next attempt afresh.
            "reconnect_timeout": env.float("DATABASE_POOL_RECONNECT_TIMEOUT", default=10.0),
        },
        "connect_timeout": env.int("DATABASE_CONNECT_TIMEOUT", default=5),
    }
    _db["CONN_MAX_AGE"] = 0  # the pool owns connection reuse
    # The pool checks a connection before handing it out: after a database restart an idle pooled connection is
    # dead, and would otherwise fail the request that gets it.
    _db["CONN_HEALTH_CHECKS"] = True
    DATABASES = {"default": _db}
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "claraverse.sqlite3",
            "OPTIONS": {
                # WAL and a busy timeout let the web threads, worker and beat share one file;
                # IMMEDIATE transactions take the write lock up front instead of failing late.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, channel layer, broker ------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "cv",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 2,
                "SOCKET_TIMEOUT": 2,
            },
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "capacity": 1000, "expiry": 60},
        }
    }
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # The embedded worker runs inside the web process (manage.py serve), so an in-memory
    # broker is a real, working transport there.
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="memory://")


CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)}
if CELERY_BROKER_URL.startswith("memory://"):
    # kombu polls in-process transports; its 1 s default would delay every embedded task by up to a second.
    CELERY_BROKER_TRANSPORT_OPTIONS["polling_interval"] = 0.05
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
# In the embedded mode `manage.py serve` runs the worker and beat as threads of the web process.
EMBEDDED_WORKER = env.bool("EMBEDDED_WORKER", default=not REDIS_URL)
EMBEDDED_WORKER_CONCURRENCY = env.int("EMBEDDED_WORKER_CONCURRENCY", default=4)
# Threads of each web process that run HTTP requests (views are synchronous); each may hold one
# database connection while it serves a request, so keep it below DATABASE_POOL_MAX_SIZE.
WEB_THREADS = env.int("WEB_THREADS", default=8)

# --- Auth ----------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Comma-separated user ids that are administrators whatever their role.
SUPERADMIN_USER_IDS = env.list("SUPERADMIN_USER_IDS", default=[])

ACCESS_TOKEN_LIFETIME_SECONDS = env.int("ACCESS_TOKEN_LIFETIME_SECONDS", default=900)
REFRESH_TOKEN_LIFETIME_SECONDS = env.int("REFRESH_TOKEN_LIFETIME_SECONDS", default=7 * 24 * 3600)
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=ACCESS_TOKEN_LIFETIME_SECONDS),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=REFRESH_TOKEN_LIFETIME_SECONDS),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,  # accounts.services records logins itself
    "ALGORITHM": "HS256",
    "SIGNING_KEY": env.str("JWT_SIGNING_KEY", default="") or SECRET_KEY,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
    "AUTH_TOKEN_CLASSES": ("rest_framework_simplejwt.tokens.AccessToken",),
    "TOKEN_TYPE_CLAIM": "token_type",
    "JTI_CLAIM": "jti",
    "LEEWAY": 0,
}

# --- REST framework and OpenAPI --------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": [
        "claraverse.ratelimit.PublicReadThrottle",
        "claraverse.ratelimit.AuthenticatedThrottle",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["claraverse.parsers.JsonBodyParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "claraverse.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DATETIME_FORMAT": "iso-8601",
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SPECTACULAR_SETTINGS = {
    "TITLE": "ClaraVerse API",
    "DESCRIPTION": "REST API of the ClaraVerse agent platform. WebSockets are documented in the README.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/",
    "ENUM_NAME_OVERRIDES": {
        "HealthCheckStateEnum": ["ok", "down"],
        "ExecutionStatusEnum": "executions.models.ExecutionStatus",
        "NodeResultStatusEnum": ["completed", "failed", "skipped", "cancelled"],
    },
}

# --- Rate limits (requests per minute; CONTRACT §13) ------------------------------------------
RATE_LIMIT_GLOBAL_API = env.int("RATE_LIMIT_GLOBAL_API", default=200)
RATE_LIMIT_PUBLIC_READ = env.int("RATE_LIMIT_PUBLIC_READ", default=120)
RATE_LIMIT_AUTHENTICATED = env.int("RATE_LIMIT_AUTHENTICATED", default=60)
RATE_LIMIT_WEBSOCKET = env.int("RATE_LIMIT_WEBSOCKET", default=20)
RATE_LIMIT_IMAGE_PROXY = env.int("RATE_LIMIT_IMAGE_PROXY", default=60)
RATE_LIMIT_UPLOAD = 10  # fixed by API.md
# How many reverse proxies sit in front of the server; their X-Forwarded-For entries are trusted
# to find the client address that per-IP limits count. 0 trusts none.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# --- CORS ----------------------------------------------------------------------------------
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_ALLOW_CREDENTIALS = False
CORS_URLS_REGEX = r"^/(api|health)(/.*)?$"
CORS_EXPOSE_HEADERS = ["Retry-After", "X-Request-ID"]

# --- Outbound HTTP (CONTRACT §7) -------------------------------------------------------------
OUTBOUND_ALLOW_PRIVATE_NETWORKS = env.bool("OUTBOUND_ALLOW_PRIVATE_NETWORKS", default=False)
# CIDRs allowed even though they are private, e.g. an internal SearXNG ("10.0.0.5/32").
OUTBOUND_ALLOWED_NETWORKS = env.list("OUTBOUND_ALLOWED_NETWORKS", default=[])
OUTBOUND_CONNECT_TIMEOUT_SECONDS = env.float("OUTBOUND_CONNECT_TIMEOUT_SECONDS", default=5.0)
OUTBOUND_READ_TIMEOUT_SECONDS = env.float("OUTBOUND_READ_TIMEOUT_SECONDS", default=30.0)
OUTBOUND_MAX_RESPONSE_BYTES = env.int("OUTBOUND_MAX_RESPONSE_BYTES", default=10 * 1024 * 1024)
OUTBOUND_MAX_REDIRECTS = env.int("OUTBOUND_MAX_REDIRECTS", default=5)

# --- Requests and WebSockets ---------------------------------------------------------------
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BODY_BYTES", default=2 * 1024 * 1024)
WEBSOCKET_MAX_FRAME_BYTES = env.int("WEBSOCKET_MAX_FRAME_BYTES", default=256 * 1024)

# --- Public content --------------------------------------------------------------------------
PRIVACY_POLICY_FILE = env.str("PRIVACY_POLICY_FILE", default=str(BASE_DIR / "docs" / "privacy-policy.md"))

# --- Internationalisation, static files ------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG

# --- Security headers when served over HTTPS --------------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_HTTPS_PROXY", default=False) else None
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Logging -------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "claraverse.logging.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "claraverse.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": env.str("LOG_FORMAT", default="plain"),
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR"},  # our middleware logs failures with the request id
        "daphne": {"level": "WARNING"},
    },
}

# --- Refuse to run in production on the public development keys --------------------------------
if not DEBUG:
    if SECRET_KEY == DEFAULT_SECRET_KEY:
        raise ImproperlyConfigured("SECRET_KEY is the public development default; set SECRET_KEY (DEBUG is off).")
    if DEFAULT_ENCRYPTION_KEY in ENCRYPTION_KEYS:
        raise ImproperlyConfigured(
            "ENCRYPTION_KEYS contains the public development default; set your own keys (DEBUG is off)."
        )

# --- Periodic tasks (installed into django-celery-beat's tables when beat starts) ---------------
CELERY_BEAT_SCHEDULE = {
    "prune-expired-refresh-tokens": {"task": "accounts.prune_expired_tokens", "schedule": 6 * 3600.0},
}

# --- LLM providers and models ------------------------------------------------------------------
# Model ids answered by GET /api/config/recommended-models (when enabled); else chosen from the
# enabled models.
RECOMMENDED_MODEL_DEFAULT = env.str("RECOMMENDED_MODEL_DEFAULT", default="")
RECOMMENDED_MODEL_FAST = env.str("RECOMMENDED_MODEL_FAST", default="")
RECOMMENDED_MODEL_SMART = env.str("RECOMMENDED_MODEL_SMART", default="")
# Benchmark runs per `POST /api/admin/models/:id/benchmark`.
LLM_BENCHMARK_RUNS = env.int("LLM_BENCHMARK_RUNS", default=3)


def _env_llm_providers() -> list[dict]:
    """Providers declared in the environment, synced at start-up by `manage.py sync_llm_providers`."""
    import json

    declared = []
    simple = [
        ("openai", "openai", "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODELS"),
        ("anthropic", "anthropic", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_MODELS"),
        ("ollama", "ollama", None, "OLLAMA_BASE_URL", "OLLAMA_MODELS"),
        (
            env.str("OPENAI_COMPATIBLE_NAME", default="openai-compatible"),
            "openai_compatible",
            "OPENAI_COMPATIBLE_API_KEY",
            "OPENAI_COMPATIBLE_BASE_URL",
            "OPENAI_COMPATIBLE_MODELS",
        ),
    ]
    for name, provider_type, key_var, url_var, models_var in simple:
        api_key = env.str(key_var, default="") if key_var else ""
        base_url = env.str(url_var, default="")
        # A provider is declared by its key, or (Ollama, OpenAI-compatible) by its URL.
        if api_key or (base_url and provider_type in {"ollama", "openai_compatible"}):
            declared.append(
                {
                    "name": name,
                    "type": provider_type,
                    "base_url": base_url,
                    "api_key": api_key,
                    "models": env.list(models_var, default=[]),
                }
            )
    extra = env.str("LLM_PROVIDERS", default="")
    if extra:
        try:
            entries = json.loads(extra)
        except ValueError as exc:
            raise ImproperlyConfigured(f"LLM_PROVIDERS is not valid JSON: {exc}") from None
        valid_types = {"openai", "anthropic", "ollama", "openai_compatible"}
        for index, entry in enumerate(entries if isinstance(entries, list) else [None]):
            if not isinstance(entry, dict) or not entry.get("name") or entry.get("type") not in valid_types:
                raise ImproperlyConfigured(
                    f"LLM_PROVIDERS[{index}] needs a name and a type among {sorted(valid_types)}."
                )
            declared.append(
                {
                    "name": str(entry["name"]),
                    "type": entry["type"],
                    "base_url": str(entry.get("base_url") or ""),
                    "api_key": str(entry.get("api_key") or ""),
                    "models": [str(model) for model in entry.get("models", [])],
                }
            )
    return declared


LLM_ENV_PROVIDERS = _env_llm_providers()

# --- Chat ------------------------------------------------------------------------------------
# Approximate tokens of past messages sent with each chat turn (capped at 60% of the model's context).
CHAT_HISTORY_TOKEN_BUDGET = env.int("CHAT_HISTORY_TOKEN_BUDGET", default=6000)
# Tool-calling rounds per chat turn before the model must answer without tools.
CHAT_MAX_TOOL_ROUNDS = env.int("CHAT_MAX_TOOL_ROUNDS", default=5)
# Chat generations running at once in one web process (threads); more wait their turn.
CHAT_MAX_CONCURRENT_GENERATIONS = env.int("CHAT_MAX_CONCURRENT_GENERATIONS", default=64)
# Model used when a chat frame names none and no agent is given (else the recommended default).
CHAT_DEFAULT_MODEL = env.str("CHAT_DEFAULT_MODEL", default="")

# --- LLM client ------------------------------------------------------------------------------
LLM_CONNECT_TIMEOUT_SECONDS = env.float("LLM_CONNECT_TIMEOUT_SECONDS", default=10.0)
# Longest silence from a provider: before the first byte and between chunks.
LLM_READ_TIMEOUT_SECONDS = env.float("LLM_READ_TIMEOUT_SECONDS", default=120.0)
# A whole call, retries included.
LLM_TOTAL_TIMEOUT_SECONDS = env.float("LLM_TOTAL_TIMEOUT_SECONDS", default=600.0)
# Attempts per call (first included) on 429, 5xx and connection errors before any output.
LLM_MAX_ATTEMPTS = env.int("LLM_MAX_ATTEMPTS", default=3)
# First backoff, doubling with jitter; Retry-After from the provider wins, both capped.
LLM_RETRY_BACKOFF_SECONDS = env.float("LLM_RETRY_BACKOFF_SECONDS", default=0.5)
LLM_RETRY_MAX_DELAY_SECONDS = env.float("LLM_RETRY_MAX_DELAY_SECONDS", default=10.0)

# --- Workflows -------------------------------------------------------------------------------
# Longest `delay` node, in seconds (CONTRACT §3).
WORKFLOW_MAX_DELAY_SECONDS = env.int("WORKFLOW_MAX_DELAY_SECONDS", default=300)
# Nodes of one execution running at once (independent branches).
WORKFLOW_MAX_PARALLEL_NODES = env.int("WORKFLOW_MAX_PARALLEL_NODES", default=4)
# How deep `agent` nodes may nest sub-agent executions.
WORKFLOW_MAX_AGENT_DEPTH = env.int("WORKFLOW_MAX_AGENT_DEPTH", default=3)
# Upper bound on any loop's iterations, whatever the node asks.
WORKFLOW_MAX_LOOP_ITERATIONS = env.int("WORKFLOW_MAX_LOOP_ITERATIONS", default=1000)
# Size limits of a saved workflow.
WORKFLOW_MAX_NODES = env.int("WORKFLOW_MAX_NODES", default=200)
WORKFLOW_MAX_EDGES = env.int("WORKFLOW_MAX_EDGES", default=500)

# --- Executions ------------------------------------------------------------------------------
# Executions older than this are pruned daily.
EXECUTION_RETENTION_DAYS = env.int("EXECUTION_RETENTION_DAYS", default=30)
# A running execution whose worker has not heartbeated for this long is marked failed.
EXECUTION_STALE_SECONDS = env.int("EXECUTION_STALE_SECONDS", default=90)
# A pending execution not picked up for this long is enqueued again (lost broker message).
EXECUTION_REQUEUE_SECONDS = env.int("EXECUTION_REQUEUE_SECONDS", default=120)
# A running execution's node events are stored and published by a background thread of the worker
# in batches (one commit for many events) instead of one write per event in the engine's path.
EXECUTION_EVENTS_IN_BACKGROUND = env.bool("EXECUTION_EVENTS_IN_BACKGROUND", default=True)
# How often a worker heartbeats a running execution.
EXECUTION_HEARTBEAT_SECONDS = env.float("EXECUTION_HEARTBEAT_SECONDS", default=10.0)
# How often beat runs the reaper (the two recoveries above take up to this much longer).
EXECUTION_REAPER_INTERVAL_SECONDS = env.float("EXECUTION_REAPER_INTERVAL_SECONDS", default=30.0)

CELERY_BEAT_SCHEDULE.update(
    {
        "reap-stale-executions": {"task": "executions.reap_stale", "schedule": EXECUTION_REAPER_INTERVAL_SECONDS},
        "prune-old-executions": {"task": "executions.prune", "schedule": 24 * 3600.0},
    }
)

# How often beat runs the schedule dispatcher (a run with nothing due is two indexed reads). A firing
# due before the next run gets a wake-up task at its time, so this bounds the lateness only when the
# wake-up is lost (a worker restart).
SCHEDULE_DISPATCH_INTERVAL_SECONDS = env.float("SCHEDULE_DISPATCH_INTERVAL_SECONDS", default=5.0)
CELERY_BEAT_SCHEDULE["dispatch-due-schedules"] = {
    "task": "executions.dispatch_due_schedules",
    "schedule": SCHEDULE_DISPATCH_INTERVAL_SECONDS,
}

# --- Tools -----------------------------------------------------------------------------------
# Model that ranks POST /api/tools/recommend; empty (or failing) means a lexical ranking.
TOOL_RECOMMENDATION_MODEL = env.str("TOOL_RECOMMENDATION_MODEL", default="")

# --- API keys and webhook callbacks (CONTRACT §6) -------------------------------------------------
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=6)
# First retry delay; each next one doubles (10, 20, 40, ... seconds).
WEBHOOK_RETRY_BASE_SECONDS = env.int("WEBHOOK_RETRY_BASE_SECONDS", default=10)
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
# A callback whose first attempt is not recorded this long after its execution ended lost its queue
# message (the broker was down then): a periodic task sends it again.
WEBHOOK_REQUEUE_SECONDS = env.int("WEBHOOK_REQUEUE_SECONDS", default=120)
CELERY_BEAT_SCHEDULE["requeue-lost-webhooks"] = {"task": "apikeys.requeue_lost_webhooks", "schedule": 60.0}
CELERY_BEAT_SCHEDULE["prune-idempotency-records"] = {"task": "apikeys.prune_idempotency", "schedule": 3600.0}

# --- Quotas (CONTRACT §11): per tier, each overridable as QUOTA_<TIER>_<LIMIT> -----------------
_QUOTA_DEFAULTS = {
    "free": {"messages_per_day": 200, "executions_per_day": 100, "storage_mb": 100},
    "pro": {"messages_per_day": 2000, "executions_per_day": 1000, "storage_mb": 5000},
    "enterprise": {"messages_per_day": 20000, "executions_per_day": 10000, "storage_mb": 50000},
}
QUOTA_TIERS = {
    tier: {name: env.int(f"QUOTA_{tier.upper()}_{name.upper()}", default=value) for name, value in limits.items()}
    for tier, limits in _QUOTA_DEFAULTS.items()
}

# --- Uploads and the image proxy (CONTRACT §10, §14) ------------------------------------------------
UPLOAD_MAX_BYTES = env.int("UPLOAD_MAX_BYTES", default=10 * 1024 * 1024)
UPLOAD_ROOT = Path(env.str("UPLOAD_ROOT", default=str(DATA_DIR / "uploads")))
UPLOAD_TTL_HOURS = env.int("UPLOAD_TTL_HOURS", default=24)
UPLOAD_TEXT_MAX_CHARS = env.int("UPLOAD_TEXT_MAX_CHARS", default=1_000_000)
IMAGE_PROXY_MAX_BYTES = env.int("IMAGE_PROXY_MAX_BYTES", default=5 * 1024 * 1024)
IMAGE_PROXY_CACHE_SECONDS = env.int("IMAGE_PROXY_CACHE_SECONDS", default=3600)
IMAGE_PROXY_TIMEOUT_SECONDS = env.float("IMAGE_PROXY_TIMEOUT_SECONDS", default=10.0)
CELERY_BEAT_SCHEDULE["cleanup-expired-uploads"] = {"task": "uploads.cleanup_expired", "schedule": 3600.0}
# The deployment's SearXNG (JSON output enabled) for search_web; a user's own `searxng` credential wins.
SEARXNG_URL = env.str("SEARXNG_URL", default="")
TOOL_HTTP_TIMEOUT_SECONDS = env.float("TOOL_HTTP_TIMEOUT_SECONDS", default=20.0)
TOOL_SCRAPE_MAX_BYTES = env.int("TOOL_SCRAPE_MAX_BYTES", default=2 * 1024 * 1024)
TOOL_HTTP_MAX_RESPONSE_BYTES = env.int("TOOL_HTTP_MAX_RESPONSE_BYTES", default=1024 * 1024)
SMTP_TIMEOUT_SECONDS = env.float("SMTP_TIMEOUT_SECONDS", default=15.0)
# Optional CA bundle for checking SMTP servers' certificates (a private CA).
SMTP_CA_FILE = env.str("SMTP_CA_FILE", default="")

# --- Memories and chat sync (CONTRACT §9) -----------------------------------------------------
MEMORY_MAX_PER_USER = env.int("MEMORY_MAX_PER_USER", default=2000)
# Approximate tokens of memories given to the model per chat turn (~4 characters a token).
MEMORY_TOKEN_BUDGET = env.int("MEMORY_TOKEN_BUDGET", default=800)
CHAT_SYNC_MAX_MESSAGES = env.int("CHAT_SYNC_MAX_MESSAGES", default=5000)
CHAT_SYNC_MAX_MESSAGES_BYTES = env.int("CHAT_SYNC_MAX_MESSAGES_BYTES", default=1024 * 1024)
