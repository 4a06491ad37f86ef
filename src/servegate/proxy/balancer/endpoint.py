"""One address a balancer can send to: a target's IP (or, for https, its name) and port, with its weight, health
cell and load counters. Endpoint objects outlive configuration changes: a balancer rebuilt for a new snapshot
takes over the endpoints it already had, so requests in flight release the counters they raised."""

from __future__ import annotations

from typing import Any

from servegate.schema.upstreams import address_key


class Endpoint:
    __slots__ = ("target", "host", "ip", "port", "address", "keys", "host_headers", "weight", "cell", "active", "current",
                 "ewma", "load_cells", "load_mine", "fails_tcp", "fails_timeout", "fails_http", "oks",
                 "checks_ok", "checks_tcp", "checks_timeout", "checks_http")

    def __init__(self, target: str, host: str, ip: str, port: int, weight: int) -> None:
        self.target = target  # the target string (host:port) it came from
        self.host = host
        self.ip = ip
        self.port = port
        self.address = address_key(ip, port)  # its name in the node's health table
        # The upstream pool key per service scheme: plain http connects to the address; https connects by
        # name so that SNI and certificate checks see the host name.
        self.keys: tuple[tuple[str, int, bool], tuple[str, int, bool]] = ((ip, port, False), (host, port, True))
        # Kong's Host for this target, per service scheme (http, https): the host, with its port unless default.
        name = f"[{host}]" if ":" in host else host
        self.host_headers: tuple[bytes, bytes] = (
            (name if port == 80 else f"{name}:{port}").encode(), (name if port == 443 else f"{name}:{port}").encode())
        self.weight = weight
        self.cell = -1  # index of its state in the node's health table
        self.active = 0  # this worker's requests on it, from pick to the last byte
        self.current = 0  # smooth weighted round-robin
        self.ewma = 0.0  # latency: seconds to the response head, smoothed
        # Node-wide open requests: one cell per process in the node's shared values (least-outstanding,
        # prefix-affinity); load_mine is this process's cell.
        self.load_cells: Any = None
        self.load_mine = -1
        # Passive check counters (consecutive, reset by the opposite outcome)
        self.fails_tcp = 0
        self.fails_timeout = 0
        self.fails_http = 0
        self.oks = 0
        # Active check counters (worker 0 only)
        self.checks_ok = 0
        self.checks_tcp = 0
        self.checks_timeout = 0
        self.checks_http = 0

    def load(self) -> float:
        """Open requests on this address over the whole node (this worker's alone without shared cells)."""
        cells = self.load_cells
        if cells is None:
            return float(self.active)
        total = 0.0
        for v in cells:
            total += v
        return total

    def __repr__(self) -> str:
        return f"Endpoint({self.target!r} -> {self.address}, weight={self.weight})"
