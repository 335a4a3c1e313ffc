"""LeadFunnel settings: everything comes from the environment (see .env.example).

Development and production differ only by variables. With no variables at all the app runs on the
embedded default: a SQLite file and a file-system Celery broker under ``var/``.
"""

import importlib.util
import json
import os
from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("LEADFUNNEL_VAR_DIR", default=str(BASE_DIR / "var"))).resolve()

env = environ.Env()


def _json_or_text(value: str) -> object:
    """An ANYMAIL_* variable's value: JSON if it is an object, a list or a boolean."""
    if value[:1] in "{[" or value in ("true", "false"):
        return json.loads(value)
    return value


if env.bool("READ_DOT_ENV", default=True) and (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=False)

# A production secret has no default: without DEBUG the app refuses to start without SECRET_KEY.
if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="insecure-development-key-do-not-use-in-production")
else:
    try:
        SECRET_KEY = env.str("SECRET_KEY")
    except ImproperlyConfigured as error:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment (see .env.example), "
            "or set DEBUG=true for local development."
        ) from error

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "anymail",
    "template_partials",
    "ninja",
    "leadfunnel",
    "contacts",
    "scoring",
    "nurturing",
]

MIDDLEWARE = [
    "leadfunnel.middleware.BodyTooLargeMiddleware",
    "leadfunnel.middleware.ShortcutMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "leadfunnel.middleware.UserLanguageMiddleware",
    "leadfunnel.middleware.UserTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "leadfunnel.urls"
WSGI_APPLICATION = "leadfunnel.wsgi.application"

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
                "django.template.context_processors.i18n",
                "leadfunnel.context_processors.roles",
                "leadfunnel.context_processors.bell",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'leadfunnel.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    if DATABASES["default"]["NAME"] != ":memory:":
        # A fresh checkout has no var/ yet; SQLite cannot create the folder itself.
        Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # The web server, the worker and beat share one file: WAL lets readers work while one process
    # writes, IMMEDIATE takes the write lock at BEGIN so two writers queue instead of deadlocking.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
    # Tests get a file of their own (this process's), not Django's in-memory database shared
    # between threads: its table locks fail a live server's write at once, without waiting,
    # while a test reads ("database table is locked"). WAL lets them overlap.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth -------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Login throttling (django-axes, attempts kept in the database): after AXES_FAILURE_LIMIT
# failures a username is locked out from that address, and an address that failed that often
# (whatever the usernames) is locked out, for LOGIN_LOCKOUT_MINUTES after the last failure.
# A success resets the count. Unlock: admin "Access attempts", or `manage.py axes_reset`.
INSTALLED_APPS.append("axes")
MIDDLEWARE.append("axes.middleware.AxesMiddleware")  # turns a lockout into the 429 page
AUTHENTICATION_BACKENDS = [
    "leadfunnel.auth.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=8)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_RESET_ON_SUCCESS = True
# The forms' reading of TRUSTED_PROXY_COUNT.
AXES_CLIENT_IP_CALLABLE = "contacts.intake.views.client_ip"
AXES_LOCKOUT_CALLABLE = "leadfunnel.views.login_locked_out"
AXES_VERBOSE = False

# --- Language and time ------------------------------------------------------------------------
LANGUAGE_CODE = env.str("LANGUAGE_CODE", default="fr")
LANGUAGES = [("fr", _("French")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
USE_TZ = True
TIME_ZONE = env.str("TIME_ZONE", default="Europe/Paris")

# --- Static files -----------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed, compressed names in production (needs collectstatic); plain files otherwise.
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if env.bool("STATIC_MANIFEST", default=not DEBUG)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not STORAGES["staticfiles"]["BACKEND"].startswith("whitenoise")
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "media/"

# --- Email ------------------------------------------------------------------------------------
# Without EMAIL_URL (as in `make run`), each email is written to var/mail/ as an .eml file, which
# marketers read on the "Sent emails" page (/mail/). EMAIL_URL's scheme chooses the backend
# (django-environ's: consolemail://, filemail:///path, ...); smtp://, smtp+tls://, smtps:// and
# smtp+ssl:// use nurturing's SMTP backend (Django's, plus the hand-over at the last moment:
# nurturing/smtp.py). An email service provider's name as the scheme (brevo://, amazon-ses://,
# mailgun://, postmark://, sendgrid://... any ESP django-anymail supports) sends through its API
# with django-anymail, configured by ANYMAIL_* variables (below). EMAIL_BACKEND, if set, names
# any other, with EMAIL_URL still giving the host, port and login if there is one.
if env.str("EMAIL_URL", default=""):
    _SMTP_SCHEMES = ("smtp", "smtps", "smtp+tls", "smtp+ssl")
    _scheme = env.url("EMAIL_URL").scheme
    _esp = _scheme.replace("-", "_")
    if _scheme not in env.EMAIL_SCHEMES and importlib.util.find_spec(f"anymail.backends.{_esp}"):
        EMAIL_BACKEND = f"anymail.backends.{_esp}.EmailBackend"
    else:
        _smtp = _scheme in _SMTP_SCHEMES
        vars().update(
            env.email_url("EMAIL_URL", backend="nurturing.smtp.EmailBackend" if _smtp else None)
        )
else:
    EMAIL_BACKEND = "leadfunnel.mailbox.FolderBackend"
    EMAIL_FILE_PATH = str(VAR_DIR / "mail")
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="") or EMAIL_BACKEND
# django-anymail's settings, each from the variable of its name prefixed ANYMAIL_ (its docs'
# names: ANYMAIL_BREVO_API_KEY, ANYMAIL_WEBHOOK_SECRET, ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY...);
# a value written as JSON (true, {...}) is read as JSON. WEBHOOK_SECRET ("user:password") also
# switches on the ESP tracking webhooks at /esp/<esp>/tracking/ (nurturing/esp_webhooks.py).
ANYMAIL = {
    name.removeprefix("ANYMAIL_"): _json_or_text(value)
    for name, value in os.environ.items()
    if name.startswith("ANYMAIL_") and value
}
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="LeadFunnel <no-reply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# DKIM signing of what nurturing's SMTP backend sends (nurturing/dkim_signing.py; an ESP signs
# for itself): on when DKIM_SELECTOR and a private key (PEM, RSA; DKIM_PRIVATE_KEY, "\n" for the
# line breaks, or DKIM_PRIVATE_KEY_FILE) are set. DKIM_DOMAIN (d=) defaults to the domain of
# DEFAULT_FROM_EMAIL, which it must align with for DMARC (checks.py refuses a mismatch).
DKIM_SELECTOR = env.str("DKIM_SELECTOR", default="")
DKIM_DOMAIN = env.str("DKIM_DOMAIN", default="")
DKIM_PRIVATE_KEY = env.str("DKIM_PRIVATE_KEY", default="", multiline=True)
DKIM_PRIVATE_KEY_FILE = env.str("DKIM_PRIVATE_KEY_FILE", default="")
# Seconds before an SMTP connection attempt or command gives up (a stuck server is a retry).
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)
# Where links in emails (tracking, unsubscribe) point: this site's public address. `make run`
# (manage.py serve) sets it to the address it serves on when it is not set.
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")

# --- Security (production values when DEBUG is off) -------------------------------------------
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
# The preload directive only matters once the domain's owner submits it to hstspreload.org.
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
X_FRAME_OPTIONS = "DENY"

# --- Cache (rate limits) ----------------------------------------------------------------------
# Redis when there is one (shared by every web process), else this process's memory.
CACHE_URL = env.str("CACHE_URL", default=env.str("REDIS_URL", default="")) or "locmem://"
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": CACHE_URL,
        # A cache that hangs must not hold a request for long. (Rate limits use RATE_LIMIT_URL.)
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
    if CACHE_URL.startswith(("redis://", "rediss://"))
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

# --- Celery -----------------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
BROKER_DIR = VAR_DIR / "broker"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": 3600,
        # A Redis that hangs must not hold a web request: a send gives up after this and the
        # task is left to its sweep (contacts.broker). The worker reconnects on its own.
        "socket_connect_timeout": 2,
        "socket_timeout": 2,
    }
else:
    # kombu's file-system transport works across processes when "in" and "out" are the same
    # absolute folder. Nothing depends on it keeping a message: unprocessed events are swept.
    CELERY_BROKER_URL = "filesystem://localhost//"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
# Two queues: "intake" (the page-view drain, event processing) has a worker of its own in
# docker-compose so it never waits behind long send tasks; "celery" takes the rest. A worker
# started without -Q (make run, the benchmarks) consumes both.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = tuple(
    Queue(name, Exchange(name), routing_key=name) for name in ("celery", "intake")
)
CELERY_TASK_ROUTES = {
    f"contacts.tasks.{name}": {"queue": "intake"}
    for name in ("drain_page_views_task", "process_events_task", "sweep_unprocessed_events_task")
} | {"nurturing.tasks.record_esp_reports_task": {"queue": "intake"}}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 300
CELERY_TASK_TIME_LIMIT = 360
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE = {
    "sweep-unprocessed-events": {
        "task": "contacts.tasks.sweep_unprocessed_events_task",
        "schedule": env.float("EVENT_SWEEP_SECONDS", default=15.0),
    },
    "drain-page-views": {
        "task": "contacts.tasks.drain_page_views_task",
        "schedule": env.float("PAGE_VIEW_DRAIN_SECONDS", default=5.0),
    },
    "sweep-rescores": {
        "task": "scoring.tasks.sweep_rescores_task",
        "schedule": 60.0,
    },
    "sweep-inbound-deliveries": {
        "task": "contacts.tasks.sweep_inbound_deliveries_task",
        "schedule": 15.0,
    },
    "sweep-esp-reports": {
        "task": "nurturing.tasks.sweep_esp_reports_task",
        "schedule": 15.0,
    },
    "sweep-imports": {
        "task": "contacts.tasks.sweep_imports_task",
        "schedule": 60.0,
    },
    # Assignment rules beside the pull queue: new SQLs of teams that assign go to their reps.
    "assign-sqls": {
        "task": "contacts.tasks.assign_sqls_task",
        "schedule": env.float("ASSIGNMENT_SWEEP_SECONDS", default=60.0),
        "options": {"expires": 60},
    },
    "release-stale-claims": {
        "task": "contacts.tasks.release_stale_claims_task",
        "schedule": 15 * 60.0,
    },
    # Follow-up reminders due (in the app and by email), and claimed SQLs with no next step.
    "send-reminders": {
        "task": "contacts.tasks.send_reminders_task",
        "schedule": env.float("REMINDER_SWEEP_SECONDS", default=60.0),
        "options": {"expires": 60},
    },
    "flag-no-next-step": {
        "task": "contacts.tasks.flag_no_next_step_task",
        "schedule": 15 * 60.0,
        "options": {"expires": 5 * 60},  # a task older than that: the next tick does it
    },
    "purge-inactive-contacts": {
        "task": "contacts.tasks.purge_inactive_contacts_task",
        "schedule": crontab(hour=4, minute=30),
    },
    "purge-anonymous-views": {
        "task": "contacts.tasks.purge_anonymous_views_task",
        "schedule": crontab(hour=4, minute=45),
    },
    "nurturing-tick": {
        "task": "nurturing.tasks.nurturing_tick_task",
        "schedule": env.float("NURTURING_TICK_SECONDS", default=5.0),
        # A tick that waited longer than this in the queue is dropped: the next one does its work.
        "options": {"expires": 30},
    },
    # Outbound webhooks: free deliveries a dead worker held, and send what is due (retries).
    "webhooks-tick": {
        "task": "contacts.tasks.webhooks_tick_task",
        "schedule": env.float("WEBHOOK_TICK_SECONDS", default=5.0),
        "options": {"expires": 30},
    },
    # The bounce mailbox (NURTURING_BOUNCE_MAILBOX_URL): a pass reads it only when it is set.
    "read-bounce-mailbox": {
        "task": "nurturing.tasks.read_bounce_mailbox_task",
        "schedule": env.float("NURTURING_BOUNCE_MAILBOX_SECONDS", default=60.0),
        "options": {"expires": 60},
    },
    # Notifications (contacts.notification_sweeps, contacts.digest): new SQLs told to the reps
    # on duty (one coalesced notice each), SLA warnings, and the email digests that are due.
    "notify-new-sqls": {
        "task": "contacts.tasks.notify_new_sqls_task",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    "notify-sla-warnings": {
        "task": "contacts.tasks.notify_sla_warnings_task",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    "send-digests": {
        "task": "contacts.tasks.send_digests_task",
        "schedule": 5 * 60.0,
        "options": {"expires": 5 * 60},
    },
    "apply-decay": {
        "task": "scoring.tasks.apply_decay_task",
        "schedule": crontab(hour=3, minute=15),
    },
    # Fading rules' points follow their events' ages, which change at midnight (site time).
    "apply-fading": {
        "task": "scoring.tasks.apply_fading_task",
        "schedule": crontab(hour=0, minute=5),
    },
}

# --- LeadFunnel -------------------------------------------------------------------------------
# Ordered like MIDDLEWARE: each handler receives a batch of stored events (contacts.pipeline).
LEADFUNNEL_EVENT_HANDLERS: list[str] = env.list(
    "LEADFUNNEL_EVENT_HANDLERS",
    default=[
        "contacts.referrals.on_event",
        "scoring.handlers.on_event",
        "nurturing.handlers.on_event",
        # Last: its daily rows are shared between workers and stay locked until commit.
        "contacts.reports.rollups.on_event",
    ],
)
# Called with the ids of contacts created or whose profile fields changed (a form, admin, the
# API, an import), in the same transaction (contacts.changes): scoring recomputes their fit;
# the dashboard's stage stays take a changed source (the sources panel counts by it).
LEADFUNNEL_CONTACT_HANDLERS: list[str] = env.list(
    "LEADFUNNEL_CONTACT_HANDLERS",
    default=[
        "scoring.handlers.on_contacts_changed",
        "contacts.reports.rollups.on_contacts_changed",
    ],
)
# Email opens and clicks flagged as made by mail scanners are recorded but score nothing.
SCORE_MACHINE_SIGNALS = env.bool("SCORE_MACHINE_SIGNALS", default=False)
# A rule or threshold change whose preview sends more contacts than this to the sales queue
# (new SQLs) asks for a confirmation in admin before it is saved.
SCORING_CONFIRM_NEW_SQLS = env.int("SCORING_CONFIRM_NEW_SQLS", default=50)
# An event whose task never ran (broker down, worker killed) is picked up by the sweep after this.
EVENT_SWEEP_GRACE_SECONDS = env.int("EVENT_SWEEP_GRACE_SECONDS", default=30)
EVENT_MAX_ATTEMPTS = env.int("EVENT_MAX_ATTEMPTS", default=5)
SLA_HOURS = env.int("SLA_HOURS", default=4)
# Reps on duty and sales managers are warned this many hours before an unclaimed SQL breaches
# the SLA (once per lead).
SLA_WARNING_HOURS = env.float("SLA_WARNING_HOURS", default=1.0)
# How often an open page asks for the bell's unread count (htmx polling).
NOTIFICATION_BELL_SECONDS = env.int("NOTIFICATION_BELL_SECONDS", default=30)
# The currency of won deals unless a rep picks another (ISO 4217); the dashboard's revenue and
# return on cost are in it (lead source costs are taken to be in it too). Never converted.
DEFAULT_CURRENCY = env.str("DEFAULT_CURRENCY", default="EUR").strip().upper()
# A claimed SQL with no outcome after this many hours goes back to the queue (beat, audited).
CLAIM_RELEASE_HOURS = env.int("CLAIM_RELEASE_HOURS", default=48)
# A claimed SQL with no open follow-up this many hours after the claim is flagged to its owner.
FOLLOW_UP_FLAG_HOURS = env.int("FOLLOW_UP_FLAG_HOURS", default=24)
# Erase prospects (any stage before client: suspect to SQL) with no activity, and no consent
# given, for this many years, nightly; 0: never. The CNIL's rule for prospects is 3.
RETENTION_YEARS = env.int("RETENTION_YEARS", default=0)
# Modules with export(contact) -> dict and erase(contact) for the personal data other apps keep
# about a contact beyond its own rows (contacts cannot import them).
LEADFUNNEL_PERSONAL_DATA: list[str] = ["nurturing.personal_data"]
# Rate limits count in Redis when the cache is Redis (shared by every web process), else in each
# process's memory; and in memory too while Redis is unavailable (contacts.ratelimit).
RATE_LIMIT_URL = CACHE_URL if CACHE_URL.startswith(("redis://", "rediss://")) else ""
API_RATE_PER_MINUTE = env.int("API_RATE_PER_MINUTE", default=600)
# A request body larger than this many bytes (files in an upload aside) is answered 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)
FORM_RATE_PER_MINUTE = env.int("FORM_RATE_PER_MINUTE", default=10)
# Page views per minute from one address (an office behind one NAT address counts once);
# beyond, the beacon answers 429 and the view is not kept.
BEACON_RATE_PER_MINUTE = env.int("BEACON_RATE_PER_MINUTE", default=120)
# Proxies in front of the app that append to X-Forwarded-For (a TLS proxy, a load balancer):
# forms read the sender's address there (rate limit, consent proof). 0: REMOTE_ADDR.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
# Sites whose pages may send page views (scheme://host[:port]); empty: any site.
TRACKING_ORIGINS = env.list("TRACKING_ORIGINS", default=[])
# With Redis, page views wait in a Redis list and are stored in batches by the drain (beat
# every PAGE_VIEW_DRAIN_SECONDS, and kicked by the beacons); without, each is stored at once.
PAGE_VIEW_QUEUE_URL = REDIS_URL if env.bool("PAGE_VIEW_QUEUE", default=True) else ""
# An unknown visitor becomes an (anonymous) contact at this many page views, or when it sends
# a form; before, its views are kept without a contact, and forgotten after this many days.
VISITOR_CONTACT_AFTER_VIEWS = env.int("VISITOR_CONTACT_AFTER_VIEWS", default=2)
VISITOR_ANONYMOUS_DAYS = env.int("VISITOR_ANONYMOUS_DAYS", default=30)
# Nurturing: at most this many marketing emails per contact per 24 hours (0: no cap); an email
# over the cap waits, it is not dropped.
NURTURING_DAILY_EMAIL_CAP = env.int("NURTURING_DAILY_EMAIL_CAP", default=3)
# Only contacts whose consent is "granted" get marketing email (else: all but "withdrawn").
NURTURING_REQUIRE_CONSENT = env.bool("NURTURING_REQUIRE_CONSENT", default=False)
# The open pixel (the CNIL's draft recommendation: tracking an individual's opens needs their
# consent): "consent", only in emails to contacts who consented to open tracking; "all", in
# every email; "off", in none. Click tracking does not depend on it.
NURTURING_OPEN_TRACKING = env.str("NURTURING_OPEN_TRACKING", default="consent")
# Free-mail domains: an address there is a person's own, on which legitimate interest (B2B
# prospecting) does not apply; "hotmail.*" stands for every hotmail domain.
FREE_MAIL_DOMAINS = [
    "gmail.com", "googlemail.com", "orange.fr", "wanadoo.fr", "free.fr", "sfr.fr", "neuf.fr",
    "laposte.net", "bbox.fr", "numericable.fr", "club-internet.fr", "aliceadsl.fr", "hotmail.*",
    "live.*", "msn.com", "outlook.*", "yahoo.*", "ymail.com", "icloud.com", "me.com", "mac.com",
    "aol.com", "gmx.*", "protonmail.com", "proton.me", "tutanota.com",
]  # fmt: skip
# Empty (or unset): the list above.
PERSONAL_EMAIL_DOMAINS = [
    domain for domain in env.list("PERSONAL_EMAIL_DOMAINS", default=[]) if domain.strip()
] or FREE_MAIL_DOMAINS
# A send task holds the messages it claimed this long; the reaper frees them after a crash.
NURTURING_SEND_LEASE_SECONDS = env.int("NURTURING_SEND_LEASE_SECONDS", default=300)
NURTURING_MAX_ATTEMPTS = env.int("NURTURING_MAX_ATTEMPTS", default=8)
# Bounces (nurturing.bounces): a hard bounce or a spam complaint stops marketing email to the
# address at once; soft bounces (mailbox full...) do at this many within this many days
# (Pardot's default: 5).
NURTURING_SOFT_BOUNCE_LIMIT = env.int("NURTURING_SOFT_BOUNCE_LIMIT", default=5)
NURTURING_SOFT_BOUNCE_DAYS = env.int("NURTURING_SOFT_BOUNCE_DAYS", default=30)
# Site-wide: at most this many marketing emails in any rolling hour (0: no cap). Emails over it
# stay queued and go as the hour's earlier ones age out; notes to owners are not counted.
NURTURING_HOURLY_CAP = env.int("NURTURING_HOURLY_CAP", default=0)
# Bounces by mail, for plain SMTP sending (nurturing.verp, nurturing.bounce_mailbox): with
# NURTURING_BOUNCE_ADDRESS (bounces@example.com) each marketing email's envelope sender is
# bounces+<message>-<signature>@example.com; the mailbox these reach is read over IMAP from
# NURTURING_BOUNCE_MAILBOX_URL (imaps://user:password@host:993/INBOX, or imap:// in the clear,
# imap+starttls://; user and password percent-encoded) every NURTURING_BOUNCE_MAILBOX_SECONDS.
# Mail that names none of our messages or contacts is kept on the "Unmatched mail" admin page
# and moved to NURTURING_BOUNCE_REVIEW_FOLDER in the mailbox; what was recorded is deleted.
NURTURING_BOUNCE_ADDRESS = env.str("NURTURING_BOUNCE_ADDRESS", default="")
NURTURING_BOUNCE_MAILBOX_URL = env.str("NURTURING_BOUNCE_MAILBOX_URL", default="")
NURTURING_BOUNCE_REVIEW_FOLDER = env.str("NURTURING_BOUNCE_REVIEW_FOLDER", default="Review")
# Outbound webhooks (contacts.webhooks): a POST waits this long for an answer; a failed delivery
# is tried again after WEBHOOK_RETRY_SECONDS, doubled at each attempt up to
# WEBHOOK_RETRY_MAX_SECONDS, WEBHOOK_MAX_ATTEMPTS times in all; a subscription is disabled (and
# the admins told) after WEBHOOK_DISABLE_AFTER_FAILURES failed attempts in a row.
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
WEBHOOK_RETRY_SECONDS = env.int("WEBHOOK_RETRY_SECONDS", default=60)
WEBHOOK_RETRY_MAX_SECONDS = env.int("WEBHOOK_RETRY_MAX_SECONDS", default=6 * 3600)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=10)
WEBHOOK_DISABLE_AFTER_FAILURES = env.int("WEBHOOK_DISABLE_AFTER_FAILURES", default=20)
# A send task holds the deliveries it claimed this long; after a crash they go again (with the
# same webhook-id) once it has run out. Longer than the timeout (checks.py).
WEBHOOK_LEASE_SECONDS = env.int("WEBHOOK_LEASE_SECONDS", default=120)
CONTACTS_PER_PAGE = env.int("CONTACTS_PER_PAGE", default=50)

# LOG_LEVEL applies to runserver's request lines too (`make run` sets WARNING: errors only).
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        }
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler"},
        "server": {"class": "logging.StreamHandler", "formatter": "server"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
        "flufl.bounce": {"level": "WARNING"},  # a line per detector tried on every mail
        "django.server": {"handlers": ["server"], "level": LOG_LEVEL, "propagate": False},
    },
}
