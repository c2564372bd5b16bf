"""Run the app under uvicorn until SIGTERM/SIGINT; SIGHUP asks for a corpus check."""

from __future__ import annotations

import logging
import signal
import socket

__all__ = ["bind", "serve_forever"]

log = logging.getLogger("evolve.serve")


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything heavy loads: a taken port is a one-line error at once."""
    from evolve.errors import ConfigError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ConfigError(f"--host {host} --port {port}: expected an address this machine can listen on, "
                          f"got '{err.strerror or err}'") from None
    sock.listen(2048)
    return sock


def serve_forever(app, live, sock: socket.socket, *, on_ready=None) -> None:
    """Serve ``app`` on the bound ``sock`` (uvicorn, one process; searches run on the engine thread). ``SIGHUP``
    makes ``live`` reload the corpus now. ``on_ready()`` is called once the server accepts connections."""
    import uvicorn

    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=10, server_header=False)
    server = uvicorn.Server(config)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: live.request_check())
    if on_ready is not None:
        original = server.startup

        async def startup(sockets=None):
            await original(sockets=sockets)
            if server.started:
                on_ready()

        server.startup = startup
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
