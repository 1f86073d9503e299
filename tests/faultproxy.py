"""A TCP forwarder that tests use to take a shared server (Redis, PostgreSQL) "down" and back.

    with FaultProxy("127.0.0.1", 6379) as proxy:
        bus = RedisEventBus(proxy.url_for("redis://127.0.0.1:6379/0"), "a")
        proxy.cut()       # every open connection dropped, new ones reset at once
        proxy.restore()   # connections accepted and forwarded again

It never parses what it forwards, so it works for any protocol. Threads, one per direction
of each connection, so it serves many connections at once independently of the test's event
loop; a half-close (one side shuts its write end) is passed on and the other direction keeps
flowing. While cut the listening port stays bound (nobody else can take it) and each new
connection is reset as soon as it is accepted, so clients fail fast instead of hanging.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

CHUNK = 65536
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, not FIN


def _reset(sock: socket.socket) -> None:
    """Drop ``sock`` hard: wake any thread blocked on it and reset the peer."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class _Pair:
    """One client connection and its upstream connection."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self._open = 2  # directions still flowing
        self._lock = threading.Lock()

    def pump(
        self, src: socket.socket, dst: socket.socket, on_done: Callable[[_Pair], None]
    ) -> None:
        try:
            while True:
                data = src.recv(CHUNK)
                if not data:  # src shut its write end: pass the half-close on
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    break
                dst.sendall(data)
        except OSError:  # reset, or cut under us: drop both ends
            self.kill()
        finally:
            with self._lock:
                self._open -= 1
                last = self._open == 0
            if last:
                for s in (self.client, self.upstream):
                    with contextlib.suppress(OSError):
                        s.close()
                on_done(self)

    def kill(self) -> None:
        _reset(self.client)
        _reset(self.upstream)


class FaultProxy:
    """Forward 127.0.0.1:``port`` (a free port) to ``host``:``upstream_port`` until cut."""

    def __init__(self, host: str, port: int, connect_timeout_s: float = 5.0) -> None:
        self.upstream = (host, port)
        self.connect_timeout_s = connect_timeout_s
        self.accepted = 0  # connections forwarded
        self.refused = 0  # connections reset because the proxy was cut or upstream was down
        self._cut = False
        self._closed = False
        self._pairs: set[_Pair] = set()
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(512)
        self._listener.settimeout(0.1)  # so the accept loop notices close()
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"faultproxy-{self.port}", daemon=True
        )
        self._thread.start()

    # -- control -------------------------------------------------------------------------------
    def url_for(self, url: str) -> str:
        """``url`` pointed at the proxy: host 127.0.0.1 and our port, the rest unchanged."""
        parts = urlsplit(url)
        if not parts.scheme or not parts.netloc:
            raise ValueError(f"not a URL with a host: {url!r}")
        userinfo, _, _ = parts.netloc.rpartition("@")
        netloc = f"{userinfo}@" if userinfo else ""
        return urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{self.port}"))

    def cut(self) -> None:
        """Drop every open connection and reset new ones until ``restore``."""
        with self._lock:
            self._cut = True
            pairs = list(self._pairs)
        for pair in pairs:
            pair.kill()

    def restore(self) -> None:
        """Forward new connections again."""
        with self._lock:
            self._cut = False

    @property
    def is_cut(self) -> bool:
        return self._cut

    @property
    def connections(self) -> int:
        """Connections open through the proxy now."""
        with self._lock:
            return len(self._pairs)

    def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._closed:
            return
        self._closed = True
        self.cut()
        self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self._listener.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- forwarding ------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._closed:
                    return
                continue
            client.settimeout(None)
            if self._cut or self._closed:
                self._refuse(client)
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=self.connect_timeout_s)
        except OSError:
            self._refuse(client)
            return
        upstream.settimeout(None)
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = _Pair(client, upstream)
        with self._lock:
            if self._cut or self._closed:  # cut while we were connecting
                self.refused += 1
                pair.kill()
                return
            self._pairs.add(pair)
            self.accepted += 1
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=pair.pump, args=(src, dst, self._forget), daemon=True).start()

    def _refuse(self, client: socket.socket) -> None:
        with self._lock:
            self.refused += 1
        _reset(client)

    def _forget(self, pair: _Pair) -> None:
        with self._lock:
            self._pairs.discard(pair)
