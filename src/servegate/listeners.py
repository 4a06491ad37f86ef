"""Start-up checks of the listen addresses, and the hold that keeps a node's proxy ports its own.

The proxy workers bind their listeners with SO_REUSEPORT so that several workers of one node share a port.
Linux lets any process of the same user join such a group, so a second node started on the same port would
silently take a share of the traffic. Two things stop that:

* before binding anything, each address is probed with a plain bind (SO_REUSEADDR only, so TIME_WAIT
  connections of an earlier run do not count): any listener already there, with or without SO_REUSEPORT,
  makes it fail, and start-up stops with one line naming the address;
* the master then keeps one bound, non-listening "hold" socket per proxy address for the node's life. It has
  SO_REUSEPORT (the node's own workers, and the listeners a reload opens, bind next to it) but not
  SO_REUSEADDR, so another node's probe fails on it even at moments when no worker listens.
"""

from __future__ import annotations

import errno
import os
import socket

from servegate.settings import Listen, Settings


class ListenError(RuntimeError):
    """An address cannot be listened on; the message is the one line start-up prints."""


def address(listen: Listen) -> str:
    host = f"[{listen.host}]" if ":" in listen.host else listen.host
    return f"{host}:{listen.port}"


def describe(err: OSError) -> str:
    return os.strerror(err.errno).lower() if err.errno else str(err)


def listen_error(listen: Listen, setting: str, err: OSError) -> ListenError:
    return ListenError(f"cannot listen on {address(listen)} ({setting}): {describe(err)}")


def _socket(listen: Listen) -> socket.socket:
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    return sock


def probe(listen: Listen, setting: str) -> None:
    """Raise ListenError if listen's address is taken (or not ours to bind)."""
    if listen.port == 0:
        return
    with _socket(listen) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((listen.host.strip("[]"), listen.port))
        except OSError as e:
            raise listen_error(listen, setting, e) from None


def _hold(listen: Listen) -> socket.socket:
    sock = _socket(listen)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((listen.host.strip("[]"), listen.port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise listen_error(listen, "proxy_listen", e) from None
        raise
    return sock


class Holds:
    """The hold sockets of one node, by address; `claim` at start-up, `update` on a reload."""

    def __init__(self) -> None:
        self._socks: dict[tuple[str, int], socket.socket] = {}

    def claim(self, settings: Settings) -> None:
        """Probe every listen address and hold the proxy ones; ListenError names the first that is taken."""
        for listen in settings.admin_listen:
            probe(listen, "admin_listen")
        for listen in settings.status_listen:
            probe(listen, "status_listen")
        self.update(settings)

    def update(self, settings: Settings) -> None:
        """Hold the proxy addresses of `settings` (probing those not held yet), release the others."""
        wanted = {(listen.host, listen.port): listen for listen in settings.proxy_listen if listen.port != 0}
        new = [listen for key, listen in wanted.items() if key not in self._socks]
        # All probes first: a node listening on both 0.0.0.0:P and 127.0.0.1:P must not trip on its own hold.
        for listen in new:
            probe(listen, "proxy_listen")
        taken: dict[tuple[str, int], socket.socket] = {}
        try:
            for listen in new:
                taken[(listen.host, listen.port)] = _hold(listen)
        except BaseException:
            for sock in taken.values():
                sock.close()
            raise
        self._socks.update(taken)
        for key in [key for key in self._socks if key not in wanted]:
            self._socks.pop(key).close()

    def close(self) -> None:
        for sock in self._socks.values():
            sock.close()
        self._socks.clear()
