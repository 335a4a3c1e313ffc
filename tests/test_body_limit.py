"""A body larger than the server reads (DATA_UPLOAD_MAX_MEMORY_SIZE) gets a clear 413 from
every public endpoint, over real HTTP on the production server (gunicorn with its settings):
JSON for the API and the beacon, never Django's HTML 400, never a 500."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.utils import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
NINE_MB = 9 * 1024 * 1024
LIMIT = 2_621_440  # Django's default, the one .env.example leaves


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory):
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "DJANGO_"))},
        "DEBUG": "false",
        "SECRET_KEY": "body-limit-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "STATIC_MANIFEST": "false",
        "READ_DOT_ENV": "false",
        "DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('db') / 'body-limit.sqlite3'}",
        "WEB_CONCURRENCY": "1",
    }
    env.pop("DATA_UPLOAD_MAX_MEMORY_SIZE", None)
    # A database of its own with one active form (the server is another process).
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT, env=env, check=True, timeout=300,
    )  # fmt: skip
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         "from contacts.models import Form; Form.objects.create(name='News', key='newsletter')"],
        cwd=ROOT, env=env, check=True, timeout=120,
    )  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind",
         f"127.0.0.1:{port}", "leadfunnel.wsgi:application"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: _answers(port), timeout=60)
        yield port
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "Traceback" not in output, output


def _answers(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/api/v1/openapi.json")  # no database behind it
        return connection.getresponse().status == 200
    except OSError:
        return False


def post(port: int, path: str, body: bytes, content_type: str, **headers: str):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("POST", path, body=body, headers={"Content-Type": content_type, **headers})
    response = connection.getresponse()
    return response.status, response.getheader("Content-Type"), response.read()


def test_a_9_mb_api_batch_gets_a_json_413_naming_the_limit(gunicorn):
    event = {"email": "zoe@exemple.fr", "type": "page_view", "properties": {"x": "y" * 9500}}
    body = json.dumps({"events": [event] * 1000}).encode()
    assert len(body) > NINE_MB

    status, content_type, answer = post(
        gunicorn, "/api/v1/events", body, "application/json", Authorization="Bearer lf_whatever"
    )

    assert status == 413, answer[:500]
    assert content_type.startswith("application/json")
    assert json.loads(answer) == {
        "detail": f"The request body is larger than the {LIMIT:,} bytes this server reads.",
        "max_bytes": LIMIT,
    }


def test_a_9_mb_form_post_gets_a_413_with_a_clear_message(gunicorn):
    body = b"email=zoe%40exemple.fr&company=" + b"x" * NINE_MB

    status, content_type, answer = post(
        gunicorn, "/f/newsletter/", body, "application/x-www-form-urlencoded",
        **{"Accept-Language": "fr"},
    )  # fmt: skip

    assert status == 413, answer[:500]
    assert content_type.startswith("text/plain")
    assert "2\xa0621\xa0440 octets" in answer.decode(), answer.decode()


def test_a_9_mb_beacon_gets_a_json_413(gunicorn):
    body = json.dumps({"visitor_id": "v" * 12, "url": "https://a.fr/", "title": "t" * NINE_MB})

    status, content_type, answer = post(gunicorn, "/t/", body.encode(), "text/plain")

    assert status == 413, answer[:500]
    assert json.loads(answer)["max_bytes"] == LIMIT


def test_a_large_csv_import_upload_is_not_refused_by_the_body_limit(admin_client, tmp_path):
    """Files in a multipart body do not count toward the limit (as in Django)."""
    big = tmp_path / "contacts.csv"
    big.write_bytes(b"email,company\n" + b"zoe@exemple.fr," + b"x" * (3 * 1024 * 1024) + b"\n")
    with big.open("rb") as file:
        response = admin_client.post("/contacts/import/", {"file": file})
    assert response.status_code != 413


@pytest.mark.django_db
def test_a_multipart_form_post_with_an_oversized_field_gets_a_413_too(client, settings):
    """Django finds this one while parsing (the fields of a multipart body count, its files
    do not): the view's exception becomes the same 413."""
    from contacts.models import Form

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    form = Form.objects.create(name="News")

    response = client.post(f"/f/{form.key}/", {"email": "zoe@exemple.fr", "company": "x" * 2000})

    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/plain")
    assert "1,000" in response.content.decode() or "1\xa0000" in response.content.decode()
