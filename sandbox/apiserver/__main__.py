"""`python -m sandbox.apiserver`: run the sandbox API server until SIGTERM/SIGINT.

Writes a kubeconfig (for the Python client and kubectl alike) and, once serving, the bound port
to `--ready-file`, which is how the sandbox launcher learns that it may start clients.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from sandbox.apiserver.server import ApiServer


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sandbox.apiserver", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6443, help="0 picks a free port")
    parser.add_argument("--log-dir", type=Path, default=None, help="where pod logs ({ns}_{pod}.log) are read")
    parser.add_argument("--kubeconfig", type=Path, required=True, help="kubeconfig file to write")
    parser.add_argument("--history-limit", type=int, default=1000, help="watch events kept for resuming")
    parser.add_argument("--ready-file", type=Path, default=None, help="gets the bound port once serving")
    parser.add_argument("--cluster-name", default="sandbox", help="seeds the stable kube-system UID")
    parser.add_argument("--require-token", action="store_true", help="reject requests without the token")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    server = ApiServer(
        host=args.host,
        port=args.port,
        log_dir=args.log_dir,
        history_limit=args.history_limit,
        cluster_name=args.cluster_name,
        require_token=args.require_token,
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("sandbox.apiserver").info("signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    port = server.start()
    try:
        server.write_kubeconfig(args.kubeconfig)
        if args.ready_file is not None:
            # Write-then-rename, so a watcher of the file never reads a half-written port.
            temporary = args.ready_file.with_name(f".{args.ready_file.name}.tmp")
            temporary.write_text(f"{port}\n")
            temporary.replace(args.ready_file)
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
