"""The production image's build step, run as the Dockerfile runs it: a real `collectstatic`
with DEBUG off and the manifest storage on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def production_env(tmp_path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DEBUG": "false",
        "STATIC_MANIFEST": "true",
        "SECRET_KEY": "build-only-not-secret",
        "READ_DOT_ENV": "false",
        "STATIC_ROOT": str(tmp_path / "staticfiles"),
        "LEADFUNNEL_VAR_DIR": str(tmp_path / "var"),
    }
    env.pop("DATABASE_URL", None)
    return env


def test_collectstatic_with_the_manifest_storage_succeeds(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "collectstatic", "--noinput", "-v1"],
        env=production_env(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((tmp_path / "staticfiles" / "staticfiles.json").read_text())["paths"]
    chart = manifest["vendor/chartjs/chart.umd.min.js"]
    assert (tmp_path / "staticfiles" / chart).is_file()
    # The bundle's source map comment points at the map's hashed name, which exists too.
    hashed_map = manifest["vendor/chartjs/chart.umd.min.js.map"]
    assert "favicon.ico" in manifest and "favicon.svg" in manifest
    assert hashed_map.rsplit("/", 1)[-1] in (tmp_path / "staticfiles" / chart).read_text()[-200:]
    assert (tmp_path / "staticfiles" / hashed_map).is_file()
