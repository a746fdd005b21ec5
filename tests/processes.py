"""Real `dealflow` processes for the tests: start one, wait until it answers HTTP, stop it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from dealflow.deal_lifecycle.adapters.embedded_nats import free_port
from tests.support import jwks_file

DEALFLOW = [sys.executable, "-m", "dealflow"]


# The tests' identity provider's keys, as a file every `dealflow` process under test trusts.
TRUSTED_KEYS = jwks_file(Path(tempfile.mkdtemp(prefix="dealflow-tests-")))


def clean_environment(**settings: str) -> dict[str, str]:
    """This process's environment without any dealflow or NATS setting, trusting the tests' tokens
    (tests.support.token), plus these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEALFLOW_", "NATS_"))}
    env["DEALFLOW_AUTH_JWKS"] = str(TRUSTED_KEYS)
    env.update(settings)
    return env


def wait_until_answering(url: str, process: subprocess.Popen[bytes], log: Path, *, seconds: float = 30) -> None:
    """Until the process answers HTTP at `url`; fails the test with its log if it stops or takes too long."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            httpx.get(f"{url}/schema/openapi.json", timeout=1)
            return
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dealflow did not start answering at {url}:\n{log.read_text()[-5000:]}")
            time.sleep(0.1)


def start(env: Mapping[str, str], log: Path, *arguments: str) -> tuple[subprocess.Popen[bytes], str]:
    """`dealflow <arguments> --port <free port>`, its output appended to `log`, answering HTTP when returned."""
    port = free_port()
    with log.open("a") as out:
        process = subprocess.Popen([*DEALFLOW, *arguments, "--port", str(port)], env=dict(env), stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(url, process, log)
    except BaseException:
        stop(process)
        raise
    return process, url


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def serving(env: Mapping[str, str], log: Path, *arguments: str) -> Iterator[str]:
    """A running `dealflow serve` (or the command named in `arguments`) for the length of the block: its URL."""
    process, url = start(env, log, *(arguments or ("serve",)))
    try:
        yield url
    finally:
        stop(process)
