"""A small mutual-TLS server standing in for the server that hosts an HSM (CloudHSM port 2223).

The SoftHSM "cluster" of the demo has no TLS front end, so keyparity plays that server on
127.0.0.1 with a free port; the tests use it for real handshakes. Each connection gets a TLS
handshake (client certificate required by default, verified against ``client_ca``), then a
short banner, then the connection is closed. Everything is bounded: connections time out,
and leaving the ``with`` block closes the sockets and joins the threads with a timeout.
"""
from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["BANNER", "MutualTlsServer"]

BANNER = b"keyparity test HSM server: ready\n"
_POLL_S = 0.05


class MutualTlsServer:
    """``with MutualTlsServer(cert, key, client_ca) as server: host, port = server.address``.

    ``client_ca``: the CA certificate(s) client certificates must chain to — a PEM file, or a
    sequence of them (e.g. customerCA.crt and the package default client.crt). None accepts
    no client certificate at all, which needs ``require_client_cert=False``.
    ``maximum_version`` caps the TLS version (tests of TLS 1.2 behaviour).
    ``connections`` records, per connection, whether the handshake succeeded and the client
    certificate's subject (or the error), for tests and evidence.
    """

    def __init__(self, cert: Path, key: Path, client_ca: Path | Sequence[Path] | None, *,
                 require_client_cert: bool = True, host: str = "127.0.0.1", port: int = 0,
                 key_password: str | None = None, banner: bytes = BANNER,
                 handshake_timeout: float = 5.0,
                 maximum_version: ssl.TLSVersion | None = None) -> None:
        if require_client_cert and client_ca is None:
            raise ValueError("require_client_cert=True needs client_ca (the CA that issues "
                             "acceptable client certificates)")
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(str(cert), str(key), key_password)
        if client_ca is not None:
            for path in [client_ca] if isinstance(client_ca, (str, Path)) else client_ca:
                self._context.load_verify_locations(cafile=str(path))
            self._context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
        if maximum_version is not None:
            self._context.maximum_version = maximum_version
        self._bind = (host, port)
        self._banner = banner
        self._handshake_timeout = handshake_timeout
        self._listener: socket.socket | None = None
        self._address: tuple[str, int] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._open: set[socket.socket] = set()
        self.connections: list[dict[str, Any]] = []

    # -- lifecycle

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("the server has not been started")
        return self._address

    def start(self) -> MutualTlsServer:
        listener = socket.socket(socket.AF_INET6 if ":" in self._bind[0] else socket.AF_INET)
        try:
            listener.bind(self._bind)
            listener.listen(16)
            listener.settimeout(_POLL_S)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        host, port = listener.getsockname()[:2]
        self._address = (host, port)
        self._thread = threading.Thread(target=self._accept_loop, name="keyparity-tls-server",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        with self._lock:
            for conn in list(self._open):
                _shutdown(conn)
        if self._thread is not None:
            self._thread.join(timeout)
        if self._listener is not None:
            self._listener.close()
        for worker in list(self._workers):
            worker.join(timeout)

    def __enter__(self) -> MutualTlsServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- serving

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, peer = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                break
            with self._lock:
                if self._stop.is_set():
                    conn.close()
                    break
                self._open.add(conn)
                worker = threading.Thread(target=self._serve, args=(conn, peer), daemon=True,
                                          name="keyparity-tls-connection")
                self._workers = [w for w in self._workers if w.is_alive()] + [worker]
            worker.start()

    def _serve(self, conn: socket.socket, peer: Any) -> None:
        record: dict[str, Any] = {"peer": f"{peer[0]}:{peer[1]}", "ok": False,
                                  "client_certificate": None, "protocol": None, "error": None}
        tls: ssl.SSLSocket | None = None
        try:
            conn.settimeout(self._handshake_timeout)
            tls = self._context.wrap_socket(conn, server_side=True)  # handshake happens here
            record["protocol"] = tls.version()
            peer_cert = tls.getpeercert()
            if peer_cert:
                record["client_certificate"] = ",".join(
                    f"{k}={v}" for rdn in peer_cert.get("subject", ()) for k, v in rdn)
            record["ok"] = True
            tls.sendall(self._banner)
        except (ssl.SSLError, OSError) as exc:
            record["error"] = str(getattr(exc, "reason", None) or exc or type(exc).__name__)
        finally:
            with self._lock:
                self._open.discard(conn)
                self.connections.append(record)
            (tls or conn).close()


def _shutdown(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
