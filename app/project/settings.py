"""Settings of the demo project, all from environment variables (12-factor).

Redis serves three roles: Django's cache (built-in RedisCache), the session store (cache
sessions) and wsloop's message bus. ``SharedConnectionPool`` makes them share one bounded pool.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("WSLOOP_DATA_DIR", BASE_DIR.parent / "var"))


def env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise RuntimeError("set DJANGO_SECRET_KEY (or DJANGO_DEBUG=1 for development)")
    SECRET_KEY = "development-only-not-secret"
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "wsloop",  # before staticfiles: its runserver serves websockets too
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

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

# PostgreSQL when DJANGO_DB_HOST names a server (compose, Ansible); SQLite in WSLOOP_DATA_DIR
# otherwise (make run, the tests).
if os.environ.get("DJANGO_DB_HOST"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ["DJANGO_DB_HOST"],
            "PORT": os.environ.get("DJANGO_DB_PORT", "5432"),
            "NAME": os.environ.get("DJANGO_DB_NAME", "wsloop"),
            "USER": os.environ.get("DJANGO_DB_USER", "wsloop"),
            "PASSWORD": os.environ.get("DJANGO_DB_PASSWORD", ""),
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("DJANGO_DB_PATH", str(DATA_DIR / "db.sqlite3")),
        }
    }

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {"pool_class": "wsloop.redis_pool.SharedConnectionPool"},
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.cache"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

STATIC_URL = "/static/"
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT", str(DATA_DIR / "static"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

# wsloop: every WSLOOP_* setting can come from the environment of both pools.
WSLOOP_REDIS = REDIS_URL
WSLOOP_PREFIX = os.environ.get("WSLOOP_PREFIX", "")
WSLOOP_EXPIRE = int(os.environ.get("WSLOOP_EXPIRE", "3600"))
WSLOOP_HEARTBEAT = os.environ.get("WSLOOP_HEARTBEAT") or None
WSLOOP_HEARTBEAT_INTERVAL_S = float(os.environ.get("WSLOOP_HEARTBEAT_INTERVAL_S", "5"))
WSLOOP_PING_INTERVAL_S = float(os.environ.get("WSLOOP_PING_INTERVAL_S", "20"))
WSLOOP_MAX_MESSAGE_BYTES = int(os.environ.get("WSLOOP_MAX_MESSAGE_BYTES", str(64 * 1024)))
WSLOOP_SEND_QUEUE_BYTES = int(os.environ.get("WSLOOP_SEND_QUEUE_BYTES", str(1024 * 1024)))
WSLOOP_SUBPROTOCOLS = env_list("WSLOOP_SUBPROTOCOLS", "")
# History for recovery after reconnect (one Redis stream per facility); length 0 disables it.
WSLOOP_HISTORY = {
    "*": {
        "length": int(os.environ.get("WSLOOP_HISTORY_LENGTH", "1000")),
        "age_s": int(os.environ.get("WSLOOP_HISTORY_AGE_S", "3600")),
    }
}
if "WSLOOP_ALLOWED_ORIGINS" in os.environ:
    WSLOOP_ALLOWED_ORIGINS = env_list("WSLOOP_ALLOWED_ORIGINS", "")
WSLOOP_PRESENCE_TTL_S = float(os.environ.get("WSLOOP_PRESENCE_TTL_S", "60"))
WSLOOP_ALLOWED_CHANNELS = "chat.permissions.allowed_channels"
WSLOOP_PROCESS_REQUEST = os.environ.get("WSLOOP_PROCESS_REQUEST") or None

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["stderr"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
}
