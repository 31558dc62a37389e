"""clutch settings: one file, driven by environment variables.

Embedded default: SQLite in ``data/`` and SqliteHuey in its own file; no external service.
Scale-out: ``CLUTCH_DATABASE_URL`` (PostgreSQL) and ``CLUTCH_REDIS_URL`` (Huey and the channel layer).
"""

import os
import secrets
from pathlib import Path
from urllib.parse import unquote, urlparse

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("CLUTCH_DATA_DIR", BASE_DIR / "data")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def read_or_create_secret_key() -> str:
    """The secret key lives in data/secret_key, generated on first run and never committed."""
    if os.environ.get("CLUTCH_SECRET_KEY"):
        return os.environ["CLUTCH_SECRET_KEY"]
    path = DATA_DIR / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(50)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
        return key


def database_from_url(url: str) -> dict:
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql"}:
        raise ValueError(
            f"CLUTCH_DATABASE_URL must be a postgresql:// URL, got scheme {parsed.scheme!r}"
        )
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "clutch",
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": parsed.hostname or "",
        "PORT": str(parsed.port or ""),
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }


SECRET_KEY = read_or_create_secret_key()
DEBUG = env_bool("CLUTCH_DEBUG")
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("CLUTCH_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("CLUTCH_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "template_partials",
    "huey.contrib.djhuey",
    "clutch_site",
    "garage",
    "fahrtenbuch",
]

# Django's middleware; the "Inline" ones skip a thread switch per hook under ASGI, the "Page"
# ones are skipped by the token-authenticated API (clutch_site/middleware.py).
MIDDLEWARE = [
    "clutch_site.middleware.InlineSecurityMiddleware",
    "clutch_site.middleware.PageSessionMiddleware",
    "clutch_site.middleware.InlineCommonMiddleware",
    "clutch_site.middleware.InlineCsrfViewMiddleware",
    "clutch_site.middleware.InlineAuthenticationMiddleware",
    "clutch_site.middleware.PageMessageMiddleware",
    "clutch_site.middleware.InlineXFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "clutch_site.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "clutch_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

DATABASE_URL = os.environ.get("CLUTCH_DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": database_from_url(DATABASE_URL)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("CLUTCH_SQLITE_PATH", str(DATA_DIR / "clutch.sqlite3")),
            "OPTIONS": {
                # IMMEDIATE takes the write lock when a transaction starts, so two writers
                # queue on the busy timeout instead of failing with "database is locked"
                # when one of them upgrades a read to a write.
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": (
                    "PRAGMA journal_mode=WAL;"
                    "PRAGMA synchronous=NORMAL;"
                    "PRAGMA foreign_keys=ON;"
                    "PRAGMA temp_store=MEMORY;"
                    "PRAGMA mmap_size=268435456;"
                    "PRAGMA cache_size=-65536;"
                ),
            },
            # Keep each thread's connection: opening one (with the pragmas above) cost more
            # than a whole short API request. Web threads and worker threads live long.
            "CONN_MAX_AGE": 600,
            "CONN_HEALTH_CHECKS": True,
            # A file, not memory: tests run Huey consumers in other processes on it.
            "TEST": {
                "NAME": os.environ.get(
                    "CLUTCH_TEST_SQLITE_PATH", str(DATA_DIR / "test-clutch.sqlite3")
                )
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("CLUTCH_REDIS_URL", "")
if REDIS_URL:
    HUEY = {
        "huey_class": "huey.RedisHuey",
        "name": os.environ.get("CLUTCH_HUEY_NAME", "clutch"),
        "url": REDIS_URL,
        "immediate": False,
        "consumer": {"workers": 4, "worker_type": "thread"},
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    HUEY = {
        # SqliteHuey whose enqueue wakes idle workers at once (clutch_site/queue.py).
        "huey_class": "clutch_site.queue.WakeableSqliteHuey",
        "name": os.environ.get("CLUTCH_HUEY_NAME", "clutch"),
        "filename": os.environ.get("CLUTCH_HUEY_PATH", str(DATA_DIR / "huey.sqlite3")),
        "immediate": False,
        "consumer": {"workers": 4, "worker_type": "thread"},
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("CLUTCH_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"

# Messages live in the session (server side): the admin shows a new API token once that way,
# and it must not travel in a cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

# Where the default tables (gears, roads, budget, fitness criteria) are read from.
CLUTCH_CONFIG_DIR = Path(os.environ.get("CLUTCH_CONFIG_DIR", BASE_DIR / "config"))

# Longest task text accepted, in characters; request bodies may be a little larger so that
# an oversized task gets the 413 that names this limit.
CLUTCH_MAX_TASK_CHARS = int(os.environ.get("CLUTCH_MAX_TASK_CHARS", "100000"))
DATA_UPLOAD_MAX_MEMORY_SIZE = max(2_621_440, CLUTCH_MAX_TASK_CHARS * 4 + 65536)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("CLUTCH_LOG_LEVEL", "INFO")},
    "loggers": {
        # httpx logs full request URLs at INFO; Gemini-style keys in a query string must
        # never reach a log, so it speaks only at WARNING.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        # One line per executed task is noise at this volume; failures still log at ERROR.
        # With a handler of its own, run_huey leaves it alone instead of adding another
        # (which printed every line twice, at INFO).
        "huey": {
            "handlers": ["console"],
            "level": os.environ.get("CLUTCH_HUEY_LOG_LEVEL", "WARNING"),
            "propagate": False,
        },
    },
}
