"""Installed from a wheel, `dealflow` starts in any directory: the policy, the alert rules and the
event schemas are shipped inside the package, not read from a checkout.

The wheel is built from a copy of the sources (so nothing is written into the checkout) and installed
alone, without dependencies, into a scratch virtualenv; the dependencies come from this virtualenv
through a .pth file, so no network is needed. Every command runs in an empty directory with no
PYTHONPATH, and the test checks that the code imported is the scratch virtualenv's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dealflow.deal_lifecycle.adapters.embedded_nats import EmbeddedNats, free_port
from tests.processes import clean_environment, stop, wait_until_answering
from tests.support import ROOT

SOURCES = ("pyproject.toml", "README.md", "services", "deploy", "schemas")


class Installed:
    def __init__(self, venv: Path, home: Path) -> None:
        self.venv = venv
        self.home = home  # an empty directory, the working directory of every command

    def env(self, **settings: str) -> dict[str, str]:
        env = clean_environment(**settings)
        # Installed and started as is: no identity provider configured, so the development key is used.
        env.pop("DEALFLOW_AUTH_JWKS", None)
        env.pop("PYTHONPATH", None)
        env.pop("VIRTUAL_ENV", None)
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return env

    def run(self, *arguments: str, **settings: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603
            [str(self.venv / "bin" / "dealflow"), *arguments], cwd=self.home, env=self.env(**settings), capture_output=True, text=True, timeout=60
        )

    def start(self, log: Path, *arguments: str, **settings: str) -> subprocess.Popen[bytes]:
        with log.open("a") as out:
            return subprocess.Popen(  # noqa: S603
                [str(self.venv / "bin" / "dealflow"), *arguments], cwd=self.home, env=self.env(**settings), stdout=out, stderr=subprocess.STDOUT
            )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            # symlinks=True: services/defaults/ points at deploy/ and schemas/, copied alongside
            shutil.copytree(path, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(work / "dist"), str(source)], check=True)  # noqa: S603
    [wheel] = (work / "dist").glob("dealflow-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)  # noqa: S603
    scratch = Path(subprocess.run(  # noqa: S603
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], check=True, capture_output=True, text=True
    ).stdout.strip())
    # The dependencies: this virtualenv's site-packages, after the scratch one (a .pth line appends to sys.path).
    (scratch / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", "--no-index", str(wheel)], check=True)  # noqa: S603
    home = work / "empty"
    home.mkdir()
    return Installed(venv, home)


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    with EmbeddedNats(tmp_path / "nats") as server:
        yield server


def test_the_installed_package_is_the_one_imported_not_the_checkout(installed: Installed) -> None:
    where = subprocess.run(  # noqa: S603
        [str(installed.venv / "bin" / "python"), "-c", "import dealflow, dealflow.config_file as c; print(dealflow.__file__); print(c.packaged('policy.toml'))"],
        cwd=installed.home, env=installed.env(), capture_output=True, text=True, check=True,
    ).stdout.split()
    assert all(Path(path).is_relative_to(installed.venv) for path in where), where
    shipped = Path(where[1])
    assert not shipped.is_symlink() and shipped.read_bytes() == (ROOT / "deploy" / "policy.toml").read_bytes()
    # The code is reached as `dealflow`; a generic `services` package is not ours to take.
    clash = subprocess.run(  # noqa: S603
        [str(installed.venv / "bin" / "python"), "-c", "import services"],
        cwd=installed.home, env=installed.env(), capture_output=True, text=True, check=False,
    )
    assert clash.returncode != 0 and "No module named 'services'" in clash.stderr, clash.stderr


def test_serve_starts_in_an_empty_directory_on_the_built_in_policy(installed: Installed, tmp_path: Path) -> None:
    log, port = tmp_path / "serve.log", free_port()
    process = installed.start(log, "serve", "--port", str(port))
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_answering(url, process, log)
        minted = installed.run("token", "--role", "emitter", "--sub", "crm")
        assert minted.returncode == 0, minted.stderr
        opened = httpx.post(
            f"{url}/deals", json={"title": "Acme payroll", "client_name": "Acme Ltd", "owner": "ann"},
            headers={"Authorization": f"Bearer {minted.stdout.strip()}"}, timeout=10,
        )
        assert opened.status_code == 201, opened.text
        assert opened.json()["id"] and httpx.get(f"{url}/deals", timeout=10).status_code == 401
    finally:
        stop(process)
    assert "policy built-in default (sha256:" in log.read_text()
    assert "tokens verified with the development key in var" in log.read_text()
    assert (installed.home / "var" / "dealflow.sqlite3").exists()  # the store is where it was started


def test_the_notifier_starts_in_an_empty_directory_on_the_shipped_rules_and_schemas(
    installed: Installed, nats: EmbeddedNats, tmp_path: Path
) -> None:
    serve_log, notifier_log, port = tmp_path / "serve.log", tmp_path / "notifier.log", free_port()
    # The deal service creates the events stream the notifier consumes.
    serve = installed.start(serve_log, "serve", "--port", str(port), NATS_URL=nats.url)
    notifier = None
    try:
        wait_until_answering(f"http://127.0.0.1:{port}", serve, serve_log)
        notifier = installed.start(notifier_log, "notifier", NATS_URL=nats.url)
        deadline = time.monotonic() + 30
        while "notifier consuming" not in notifier_log.read_text():
            if notifier.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the notifier did not start:\n{notifier_log.read_text()[-3000:]}")
            time.sleep(0.1)
    finally:
        for process in (notifier, serve):
            if process is not None:
                stop(process)
    assert "rules built-in default" in notifier_log.read_text()


def test_up_starts_the_whole_system_in_an_empty_directory(installed: Installed, tmp_path: Path) -> None:
    log, port = tmp_path / "up.log", free_port()
    process = installed.start(log, "up", "--port", str(port), "--nats-port", str(free_port()))
    try:
        wait_until_answering(f"http://127.0.0.1:{port}", process, log)
        deadline = time.monotonic() + 30
        # The notifier reads the shipped rules and schemas, so it gets as far as consuming events.
        while "notifier consuming" not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dealflow up did not start its notifier:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        assert (installed.home / "var" / "nats.url").read_text().startswith("nats://127.0.0.1:")
    finally:
        stop(process)


def test_a_configured_file_that_does_not_exist_is_not_found_not_malformed(installed: Installed) -> None:
    serve = installed.run("serve", DEALFLOW_POLICY="mine/policy.toml")
    assert serve.returncode == 2
    assert f"not found: {installed.home / 'mine' / 'policy.toml'} (set DEALFLOW_POLICY to " in serve.stderr
    assert "malformed" not in serve.stderr
    notifier = installed.run("notifier", DEALFLOW_ALERT_RULES="mine/rules.toml", NATS_URL="nats://127.0.0.1:1")
    assert notifier.returncode == 2
    assert f"not found: {installed.home / 'mine' / 'rules.toml'} (set DEALFLOW_ALERT_RULES to " in notifier.stderr
    assert "invalid" not in notifier.stderr


def test_schemas_check_compares_the_packaged_files_and_never_writes_into_site_packages(installed: Installed) -> None:
    check = installed.run("schemas", "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    # As many files as the checkout's own schemas/ holds: all of them were packaged.
    source = subprocess.run([sys.executable, "-m", "dealflow", "schemas", "--check"], capture_output=True, text=True, check=True)
    counted = source.stdout.rstrip().rpartition(" matches the code ")[2]
    assert counted.startswith("(") and counted.endswith(" files)"), source.stdout
    assert check.stdout.startswith(str(installed.venv)) and check.stdout.rstrip().endswith(f"matches the code {counted}"), check.stdout
    write = installed.run("schemas")
    assert write.returncode == 2
    assert "installed package" in write.stderr and "wrote" not in write.stdout
    assert not (installed.home / "schemas").exists()
