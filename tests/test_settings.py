"""Settings come from the environment only; production misconfiguration fails loudly."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "k" * 20 + "production-like-secret-value-0123456789-abcdefghij",
    "ALLOWED_HOSTS": "leadfunnel.example.com",
    "DATABASE_URL": "sqlite:////tmp/leadfunnel-check.sqlite3",
    "READ_DOT_ENV": "false",
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SECURE_", "SESSION_", "CSRF_", "STATIC_"))
    }
    clean.pop("SECRET_KEY", None)
    clean.pop("DEBUG", None)
    clean.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set while the browser tests run
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_check_deploy_is_clean_with_production_variables():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_a_missing_production_secret_stops_the_start_with_a_clear_message():
    env = {k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_env_example_documents_every_variable_the_settings_read():
    settings_source = (ROOT / "leadfunnel" / "settings.py").read_text()
    serve_source = (ROOT / "leadfunnel" / "management" / "commands" / "serve.py").read_text()
    read = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z_]+)"', settings_source))
    read |= set(re.findall(r'environ\.get\("([A-Z_]+)"', serve_source))
    gunicorn_source = (ROOT / "gunicorn.conf.py").read_text()
    read |= set(re.findall(r'environ\.get\("([A-Z_]+)"', gunicorn_source))
    read |= set(re.findall(r'Env\(\)\.str\("([A-Z_]+)"', settings_source))
    documented = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert read, "the pattern found no variable at all"
    assert read - documented == set()


def test_an_esp_is_chosen_by_its_name_in_email_url_and_set_up_by_anymail_variables():
    show = "from django.conf import settings; print(settings.EMAIL_BACKEND, settings.ANYMAIL)"
    esp_env = {
        **PRODUCTION,
        "EMAIL_URL": "brevo://",
        "ANYMAIL_BREVO_API_KEY": "xkeysib-123",
        "ANYMAIL_WEBHOOK_SECRET": "lf:secret",
        "ANYMAIL_SEND_DEFAULTS": '{"tags": ["leadfunnel"]}',
        "ANYMAIL_IGNORE_UNSUPPORTED_FEATURES": "true",
        "ANYMAIL_MAILGUN_API_KEY": "",
    }
    brevo = manage("shell", "--no-imports", "-c", show, env=esp_env)
    ses = manage(
        "shell", "--no-imports", "-c", show, env={**PRODUCTION, "EMAIL_URL": "amazon-ses://"}
    )
    smtp = manage(
        "shell", "--no-imports", "-c", show, env={**PRODUCTION, "EMAIL_URL": "smtp://mail:25"}
    )

    assert brevo.returncode == 0, brevo.stderr
    backend, anymail = brevo.stdout.split(" ", 1)
    assert backend == "anymail.backends.brevo.EmailBackend"
    assert eval(anymail) == {  # noqa: S307 (our own printed dict)
        "BREVO_API_KEY": "xkeysib-123",
        "WEBHOOK_SECRET": "lf:secret",
        "SEND_DEFAULTS": {"tags": ["leadfunnel"]},
        "IGNORE_UNSUPPORTED_FEATURES": True,
    }
    assert ses.stdout.startswith("anymail.backends.amazon_ses.EmailBackend")
    assert smtp.stdout.startswith("nurturing.smtp.EmailBackend")
