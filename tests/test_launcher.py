"""The launcher starts, serves, stops; a busy port moves to the next one or fails with a clear message."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from main_launcher import choose_port

ROOT = Path(__file__).resolve().parents[1]


def _busy_socket():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s, s.getsockname()[1]


def test_choose_port_falls_back_or_explains():
    s, port = _busy_socket()
    try:
        assert choose_port("127.0.0.1", port, fallback=True) != port
        with pytest.raises(SystemExit, match="already in use"):
            choose_port("127.0.0.1", port, fallback=False)
    finally:
        s.close()


def test_port_with_lingering_connections_is_free_again():
    """Issue 12 item 8: after a restart the port's old connections sit in TIME_WAIT; the same port must be reused
    (the server binds with SO_REUSEADDR), not the next one."""
    from main_launcher import port_is_free

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # the server side closes first: its end of the connection stays in TIME_WAIT
    client.recv(1)
    client.close()
    assert not port_is_free("127.0.0.1", port)  # still listening
    server.close()
    assert port_is_free("127.0.0.1", port)
    assert choose_port("127.0.0.1", port, fallback=True) == port


def _wait_for(url: str, proc: subprocess.Popen, timeout: float = 90) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"launcher exited early: {proc.stdout.read() if proc.stdout else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode("utf-8", "replace")
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def test_launcher_serves_and_stops(tmp_path):
    s, busy = _busy_socket()  # the configured port is taken: the launcher must move on to the next free one
    env = dict(os.environ, GSV_HOME=str(tmp_path), GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=str(tmp_path / "gr"))
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "main_launcher.py"), "--port", str(busy)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        html = None
        for candidate in range(busy + 1, busy + 21):
            try:
                html = _wait_for(f"http://127.0.0.1:{candidate}/", proc, timeout=60 if candidate == busy + 1 else 2)
                break
            except AssertionError:
                if proc.poll() is not None:
                    raise
        assert html is not None and "GSV Playground" in html
    finally:
        s.close()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("launcher did not stop on SIGINT")
