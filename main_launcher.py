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
    parser.add_argument("--auth", default=settings.auth, metavar="USER:PASSWORD",
                        help="require this login (several separated by ','); needed with --share or a LAN host")
    parser.add_argument("--allow-open-access", action="store_true", default=settings.allow_open_access,
                        help="serve --share or a LAN host without a login (anyone who reaches it can use the app)")
    return parser.parse_args(argv), settings


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def access_check(host: str, share: bool, auth: str | None, allow_open: bool) -> str:
    """'' when the app may start as configured, else why not. Reachable from other machines (``--share`` or a
    non-loopback host) without a login, the app would let anyone use the server's GPU and files: a login is
    required unless ``--allow-open-access`` says otherwise (then a warning is printed)."""
    exposed = share or host not in LOOPBACK
    if not exposed or (auth and auth.strip()):
        return ""
    where = "a public --share link" if share else f"host {host} (other machines can reach it)"
    if allow_open:
        return ""
    return (f"error: serving on {where} needs a login: add --auth USER:PASSWORD (or AUTH in my_config.py), or "
            "--allow-open-access if everyone who can reach it may use this app and the files it reads")


def parse_auth(auth: str | None) -> list[tuple[str, str]] | None:
    if not auth or not auth.strip():
        return None
    pairs = []
    for item in auth.split(","):
        user, _, password = item.strip().partition(":")
        if not user or not password:
            raise SystemExit("error: --auth takes USER:PASSWORD (several separated by ',')")
        pairs.append((user, password))
    return pairs


def main(argv: list[str] | None = None) -> int:
    args, settings = parse_args(argv)
    settings = dataclasses.replace(
        settings, host=args.host, port=args.port, share=args.share,
        port_fallback=settings.port_fallback and not args.no_port_fallback, auth=args.auth,
        allow_open_access=args.allow_open_access,
    )
    refusal = access_check(settings.host, settings.share, settings.auth, settings.allow_open_access)
    if refusal:
        raise SystemExit(refusal)
    auth = parse_auth(settings.auth)
    if (settings.share or settings.host not in LOOPBACK) and auth is None:
        print("WARNING: GSV Playground is reachable from other machines WITHOUT a login (--allow-open-access): "
              "anyone who reaches it can synthesise, train and read the files in its folders.", flush=True)
    port = choose_port(settings.host, settings.port, settings.port_fallback)
    if port != settings.port:
        print(f"NOTE: port {settings.port} is in use by another program; GSV Playground uses port {port} instead "
              f"(open the new address below; --no-port-fallback makes this an error)", flush=True)
    from pages.app import build_app, launch_kwargs

    app = build_app(settings)
    print(f"GSV Playground on http://{settings.host}:{port}", flush=True)
    app.queue().launch(server_name=settings.host, server_port=port, share=settings.share, inbrowser=False,
                       auth=auth, **launch_kwargs(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
