"""`pip install .` (a wheel, not editable) gives a working service from any directory (issue 13,
point 16): the defaults, migrations, templates and campaigns ship inside the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from paywall.config import ROOT
from tests.support.faults import free_port, wait_healthy

UNSHIPPED = (".git", ".venv", "build", "dist", "var", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis")


def test_wheel_lists_every_package_and_maps_config_and_migrations() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "paywall").rglob("__init__.py")}
    listed = set(tool["packages"])
    assert listed - {"paywall._config", "paywall._migrations"} == found
    # The wheel's copies come from the top-level folders themselves: no second copy to keep in step.
    assert tool["package-dir"] == {"paywall._config": "config", "paywall._migrations": "migrations"}
    assert not (ROOT / "paywall" / "_config").exists() and not (ROOT / "paywall" / "_migrations").exists()


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs)


@pytest.mark.slow
def test_wheel_install_migrates_and_serves_from_any_directory(tmp_path: Path) -> None:
    """Build the wheel, install it (without dependencies) into a fresh venv that borrows this one's
    installed dependencies, then `paywall db upgrade` and `paywall serve` from an unrelated folder."""
    # From a clean copy: setuptools reuses a build/ folder left in the checkout by an earlier build.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*UNSHIPPED))
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(source)])
    (wheel,) = dist.glob("paywall-*.whl")

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = Path(
        run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip()
    )
    # Dependencies from this environment's site-packages, appended after the venv's own: the
    # editable install of the checkout there is a .pth hook that a plain path line does not run.
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "--quiet",
            str(wheel),
        ]
    )

    elsewhere = tmp_path / "elsewhere"
    home = tmp_path / "home"
    elsewhere.mkdir()
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYWALL_", "XDG_"))}
    env.update(HOME=str(home), PAYWALL_WORKERS="1", PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    paywall = str(venv / "bin" / "paywall")

    where = run(
        [str(python), "-c", "import paywall.config as c; print(c.CONFIG_DIR, c.IN_CHECKOUT)"],
        cwd=elsewhere,
        env=env,
    )
    assert where.stdout.split() == [str(site / "paywall" / "_config"), "False"]

    upgraded = run([paywall, "db", "upgrade"], cwd=elsewhere, env=env)
    database = home / ".local" / "share" / "paywall" / "paywall.sqlite3"
    assert f"sqlite:///{database}" in upgraded.stdout and database.is_file()
    campaigns = run([paywall, "appeals", "list"], cwd=elsewhere, env=env)
    assert campaigns.stdout.startswith("keep-us-open\t")

    port = free_port()
    proc = subprocess.Popen(
        [paywall, "serve", "--bind", f"127.0.0.1:{port}"],
        cwd=elsewhere,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}", seconds=60)
        # Templates ship too: the API page renders.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/docs", timeout=5) as resp:
            assert resp.status == 200 and b"<html" in resp.read().lower()
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert "Traceback" not in output, output
