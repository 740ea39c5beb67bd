"""``qatflow dashboard``: the local web UI over the ML Metadata stores of local runs."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import threading

from dashboard.store import find_stores
from model_maker.core.errors import UsageError
from pipeline.commands.console import hides_native_chatter

LOG = logging.getLogger("qatflow")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _import_tensorflow() -> None:
    try:
        import tensorflow  # noqa: F401 - deferred: the point is to import it in the background
    except ImportError:  # the training page will say so
        LOG.warning("TensorFlow is not importable: training curves will not load")


@hides_native_chatter
def _cmd_dashboard(args: argparse.Namespace) -> int:
    from dashboard.app import create_app, host_name  # deferred: Flask, needed only to serve

    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        raise UsageError(f"--root {args.root}: no such folder")
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: must be between 1 and 65535")
    allowed_hosts = args.allow_host or []
    for name in allowed_hosts:
        if not host_name(name) or "/" in name:
            raise UsageError(f"--allow-host {name!r}: give a host name or address, e.g. box.lan")
    if not _is_loopback(args.host):
        if allowed_hosts:
            reach = f"requests naming {', '.join(allowed_hosts)} are answered"
        else:
            reach = (
                "other machines get 400 until you add --allow-host with the name or address "
                "they use for this one"
            )
        LOG.warning(
            "serving on %s: anyone who can reach this address can read the runs under %s; %s",
            args.host,
            root,
            reach,
        )
    stores = find_stores(root)
    LOG.info("%d ML Metadata store(s) under %s: %s", len(stores), root,
             ", ".join(s.key for s in stores) or "none yet")  # fmt: skip
    app = create_app(root, host=args.host, allowed_hosts=allowed_hosts)
    # Reading TensorBoard logs needs TensorFlow, which takes seconds to import: start
    # now, in the background, so the first training page does not wait for it.
    threading.Thread(target=_import_tensorflow, name="import-tensorflow", daemon=True).start()
    print(f"qatflow dashboard on http://{args.host}:{args.port}/ (Ctrl-C stops it)", flush=True)
    app.run(host=args.host, port=args.port, debug=False, use_reloader=False, threaded=True)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "dashboard",
        help="local web UI over the runs under a pipeline root (read-only)",
        description="Serve the runs list, each run's DAG and lineage, the float/PTQ/QAT "
        "evaluation, training curves and run comparisons from the ML Metadata store(s) "
        "(metadata.sqlite) under --root and its sub-folders. Read-only; binds to loopback "
        "unless --host says otherwise.",
    )
    parser.add_argument(
        "--root", default="runs", metavar="DIR", help="pipeline root or a folder of them (runs)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument(
        "--allow-host",
        action="append",
        metavar="NAME",
        help="also answer requests addressed to NAME (a name or address this machine is "
        "reached by; repeatable). Answered anyway: localhost, 127.0.0.1, ::1 and --host; "
        "any other Host header gets 400 (a guard against DNS rebinding)",
    )
    parser.set_defaults(func=_cmd_dashboard)
