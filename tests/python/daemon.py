"""`faultline serve` as the Python tests run it: the real binary in its own process, on the
environment given (FAULTLINE_<SECTION>__<KEY> variables of this process removed first), logging to a
file, waited for until an HTTP path answers 200, stopped with SIGTERM."""
import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("FAULTLINE_BIN", str(ROOT / "target" / "debug" / "faultline"))
if not os.path.isabs(BIN):
    BIN = str(ROOT / BIN)
# Straight to 127.0.0.1, whatever http_proxy says.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_binary():
    if not os.access(BIN, os.X_OK):
        pytest.fail(f"no faultline binary at {BIN}: run `cargo build` (or set FAULTLINE_BIN)")


def clean_env(**extra):
    """This process's environment without faultline configuration, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not (k.startswith("FAULTLINE_") and "__" in k)}
    env.update(extra)
    return env


@contextlib.contextmanager
def serve(env, log, base, ready="/healthz", timeout_s=30, cwd=None):
    """Runs `faultline serve` until the block ends; fails the test if `ready` does not answer 200."""
    require_binary()
    with open(log, "wb") as out:
        proc = subprocess.Popen([BIN, "serve"], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                pytest.fail(f"faultline serve exited with {proc.returncode} before {ready} answered:\n{Path(log).read_text()}")
            try:
                with HTTP.open(f"{base}{ready}", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{ready} did not answer within {timeout_s} s:\n{Path(log).read_text()}")
            time.sleep(0.1)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
