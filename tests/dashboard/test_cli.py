"""``qatflow dashboard``: arguments, errors, and a real server bound to loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

from pipeline.cli import build_parser, main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_defaults_bind_to_loopback():
    args = build_parser().parse_args(["dashboard"])
    assert (args.root, args.host, args.port) == ("runs", "127.0.0.1", 8080)
    args = build_parser().parse_args(["dashboard", "--root", "x", "--host", "0.0.0.0",
                                      "--port", "9000"])  # fmt: skip
    assert (args.root, args.host, args.port) == ("x", "0.0.0.0", 9000)


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["dashboard", "--root", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["dashboard", "--root", str(tmp_path), "--port", "70000"]) == 2
    assert "between 1 and 65535" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serves_the_runs_on_loopback(small_root):
    root, built = small_root
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "-q",
            "dashboard",
            "--root",
            str(root),
            "--port",
            str(port),
        ],  # fmt: skip
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
                    html = page.read().decode()
                break
            except OSError:
                assert process.poll() is None, process.stdout.read().decode()
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.5)
        assert all(run.run_id in html for run in built)
        # Bound to 127.0.0.1 only: the machine's other addresses do not answer.
        address = "127.0.0.1"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect(("10.255.255.255", 1))  # no packet is sent; picks an address
                address = probe.getsockname()[0]
            except OSError:
                pass  # no other interface to try
        if address != "127.0.0.1":
            with socket.socket() as sock:
                sock.settimeout(2)
                assert sock.connect_ex((address, port)) != 0
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_binding_beyond_loopback_warns_and_names_allow_host(tmp_path, monkeypatch, capsys):
    import flask

    served = []
    monkeypatch.setattr(flask.Flask, "run", lambda self, **kwargs: served.append(kwargs))
    assert main(["dashboard", "--root", str(tmp_path), "--host", "0.0.0.0"]) == 0
    assert served and served[0]["host"] == "0.0.0.0"
    warning = capsys.readouterr().err
    assert "anyone who can reach" in warning
    # Other machines send this machine's name or address as Host: without --allow-host
    # they get 400, and the warning says so.
    assert "--allow-host" in warning and "400" in warning
    argv = ["dashboard", "--root", str(tmp_path), "--host", "0.0.0.0", "--allow-host", "box.lan"]
    assert main(argv) == 0
    warning = capsys.readouterr().err
    assert "box.lan" in warning and "400" not in warning
