"""Running the app on uvicorn: bound socket first, quiet logs, draining on SIGTERM/Ctrl-C."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from ..quiet import stderr_stream


def run_server(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 8080,
    grace: float = 30.0,
    on_ready: Callable[[str], None] | None = None,
    grpc_port: int | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    keep_alive: float = 5.0,
    max_connections: int | None = 1000,
) -> None:
    """Serve `app` until SIGTERM or Ctrl-C, then stop accepting, let accepted requests
    finish (at most `grace` seconds) and return.

    Args:
        host: the address to listen on.
        port: the port to listen on; 0 picks a free port.
        on_ready: called with the URL once the socket listens (with `grpc_port`, then with
            "grpc://HOST:PORT" once the gRPC service listens too).
        grpc_port: also serve the Open Inference Protocol's gRPC service there (0: a free
            port), in the same event loop; it drains after HTTP, within `grace`.
        ssl_certfile: serve HTTPS (and gRPC over TLS) with this certificate chain (PEM).
        ssl_keyfile: the certificate's private key (PEM).
        keep_alive: seconds an idle keep-alive connection is kept open.
        max_connections: connections (and tasks) at once; beyond, new requests get 503
            (uvicorn's limit_concurrency). None: no limit.
    """
    import uvicorn

    sock, family = _listen(host, port)
    bound = sock.getsockname()[1]
    tls = _read_tls(ssl_certfile, ssl_keyfile, sock)
    _quiet_logs()
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=grace,  # type: ignore[arg-type]  # seconds, a float works
        log_level="warning",
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        timeout_keep_alive=keep_alive,  # type: ignore[arg-type]  # seconds, a float works
        limit_concurrency=max_connections,
    )
    server = uvicorn.Server(config)
    # uvicorn drains on these signals, then raises them again with the handlers it found:
    # with these no-op handlers in place, a drained server returns normally (exit 0).
    previous = {s: signal.signal(s, _ignore) for s in (signal.SIGINT, signal.SIGTERM)}
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    if grpc_port is not None:
        app.router.lifespan_context = _with_grpc(app, host, grpc_port, grace, on_ready, shown, tls)
    scheme = "https" if tls else "http"
    try:
        if on_ready is not None:
            on_ready(f"{scheme}://{shown}:{bound}/")
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()


def _listen(host: str, port: int) -> tuple[socket.socket, socket.AddressFamily]:
    """A TCP socket listening on host:port (0: a free port), and its address family."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    # sockets that say they are TCP; without it every small response waits ~40 ms for the
    # client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    return sock, family


def _read_tls(
    certfile: str | None, keyfile: str | None, sock: socket.socket
) -> tuple[bytes, bytes] | None:
    """(private key, certificate chain) PEM bytes when both files are given; on failure
    `sock` is closed."""
    if not (certfile and keyfile):
        return None
    try:
        return Path(keyfile).read_bytes(), Path(certfile).read_bytes()
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot read the TLS certificate or key: {exc}") from None


def _with_grpc(
    app: Any,
    host: str,
    port: int,
    grace: float,
    on_ready: Callable[[str], None] | None,
    shown: str,
    tls: tuple[bytes, bytes] | None,
) -> Callable[[Any], Any]:
    """A lifespan that runs the gRPC service beside the HTTP one, over the same service
    core and API keys."""
    from .grpc_service import start_grpc

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        server, servicer, bound = await start_grpc(
            app.state.core, app.state.api_keys, host, port, tls
        )
        if on_ready is not None:
            on_ready(f"grpc://{shown}:{bound}")
        try:
            yield
        finally:
            servicer.draining = True
            await server.stop(grace)

    return lifespan


def _ignore(signum: int, frame: Any) -> None:
    """Handler uvicorn re-raises into after draining: nothing left to do."""


def _quiet_logs() -> None:
    """uvicorn's own warnings and errors on the real stderr (see `quiet.stderr_stream`)."""
    handler = logging.StreamHandler(stderr_stream())
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(logging.WARNING)
        logger.propagate = False
