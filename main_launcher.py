"""Start GSV Playground: one Gradio app with the tabs TTS, ASR, Finetune, Eval and RefAudio.

    python main_launcher.py [--host 127.0.0.1] [--port 9874] [--share]

Host and port come from config.py / my_config.py / GSV_* variables; flags override them. The app listens on
127.0.0.1 unless told otherwise; ``--share`` or a LAN host only when asked for.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``port`` now. SO_REUSEADDR as the server itself (uvicorn) binds: a port
    whose last connections linger in TIME_WAIT after a restart is free; one with a listener is not."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        if os.name != "nt":  # on Windows SO_REUSEADDR would let two servers share a port
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(host: str, port: int, fallback: bool, tries: int = 20) -> int:
    """The configured port, or with ``fallback`` the next free one; a clear SystemExit otherwise."""
    for candidate in range(port, port + (tries if fallback else 1)):
        if candidate < 65536 and port_is_free(host, candidate):
            return candidate
    if fallback:
        raise SystemExit(f"error: ports {port}-{port + tries - 1} on {host} are all in use; choose another with --port")
    raise SystemExit(
        f"error: port {port} on {host} is already in use (another GSV Playground?). Stop it, pass --port, "
        "or set PORT_FALLBACK = True in my_config.py"
    )


def parse_args(argv: list[str] | None = None):
    from config import settings

    parser = argparse.ArgumentParser(description="Start the GSV Playground web app.")
    parser.add_argument("--host", default=settings.host, help=f"address to listen on (default {settings.host})")
    parser.add_argument("--port", type=int, default=settings.port, help=f"port (default {settings.port})")
    parser.add_argument("--share", action="store_true", default=settings.share, help="create a public Gradio link")
    parser.add_argument("--no-port-fallback", action="store_true", help="fail instead of moving to the next free port")
    return parser.parse_args(argv), settings


def main(argv: list[str] | None = None) -> int:
    args, settings = parse_args(argv)
    settings = dataclasses.replace(
        settings, host=args.host, port=args.port, share=args.share,
        port_fallback=settings.port_fallback and not args.no_port_fallback,
    )
    port = choose_port(settings.host, settings.port, settings.port_fallback)
    if port != settings.port:
        print(f"NOTE: port {settings.port} is in use by another program; GSV Playground uses port {port} instead "
              f"(open the new address below; --no-port-fallback makes this an error)", flush=True)
    from pages.app import build_app, launch_kwargs

    app = build_app(settings)
    print(f"GSV Playground on http://{settings.host}:{port}", flush=True)
    app.queue().launch(server_name=settings.host, server_port=port, share=settings.share, inbrowser=False,
                       **launch_kwargs())
    return 0


if __name__ == "__main__":
    sys.exit(main())
