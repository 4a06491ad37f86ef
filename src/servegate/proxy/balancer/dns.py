"""Resolving a target's host name to addresses, with the record's TTL (Kong's resolver honours TTLs too).

Order, as Kong's: the hosts file first (`/etc/hosts`: localhost, Docker's own names), then DNS A records, or
AAAA records for a name without A records, through dnspython (which reads /etc/resolv.conf, so Docker's embedded DNS works). An IP literal needs
no resolution. Answers are never awaited on a request's path: balancers resolve in the background and keep
the last good answer (Kong's `dns_stale_ttl`) when a refresh fails.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from typing import Final

log = logging.getLogger("servegate.balancer")

HOSTS_TTL: Final = 30.0  # a name from the hosts file is re-read this often
ERROR_TTL: Final = 1.0  # Kong's dns_error_ttl: retry a failing name this soon
NOT_FOUND_TTL: Final = 30.0  # Kong's dns_not_found_ttl
MIN_TTL: Final = 1.0
HOSTS_FILE: Final = "/etc/hosts"


class NameNotFound(Exception):  # noqa: N818 - Kong's "name resolution failed"
    """The name has no address (NXDOMAIN or no A/AAAA record)."""


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


_hosts: tuple[float, dict[str, list[str]]] = (0.0, {})


def hosts_file(path: str = HOSTS_FILE) -> dict[str, list[str]]:
    """name → addresses from the hosts file, re-read at most every HOSTS_TTL seconds."""
    global _hosts
    read_at, table = _hosts
    now = time.monotonic()
    if now - read_at < HOSTS_TTL and read_at:
        return table
    table = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if len(fields) < 2 or not is_ip(fields[0]):
                    continue
                for name in fields[1:]:
                    table.setdefault(name.lower(), []).append(fields[0])
    except OSError:
        pass
    _hosts = (now, table)
    return table


async def resolve(host: str) -> tuple[list[str], float]:
    """(addresses, seconds they stay valid) for a host name; NameNotFound, or OSError for a resolver
    failure (the caller keeps its previous answer)."""
    if is_ip(host):
        return [host.strip("[]")], float("inf")
    known = hosts_file().get(host.lower())
    if known:
        return _first_family(known), HOSTS_TTL
    try:
        import dns.asyncresolver
        import dns.exception
        import dns.resolver
    except ImportError:  # dnspython missing: the system resolver, without TTLs
        return await _getaddrinfo(host)
    try:
        resolver = dns.asyncresolver.get_default_resolver()
    except dns.exception.DNSException:  # no /etc/resolv.conf: the system resolver, without TTLs
        return await _getaddrinfo(host)
    addresses: list[str] = []
    ttl = float("inf")
    for rdtype in ("A", "AAAA"):
        if addresses:
            break  # Kong's record order: A records when there are any, else AAAA
        try:
            answer = await resolver.resolve(host, rdtype, search=True)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        except (dns.exception.DNSException, OSError) as e:
            raise OSError(f"dns server error: {e}") from None
        addresses.extend(r.to_text() for r in answer)
        if answer.rrset is not None:
            ttl = min(ttl, float(answer.rrset.ttl))
    if not addresses:
        raise NameNotFound(host)
    return _unique(addresses), max(MIN_TTL, ttl)


async def _getaddrinfo(host: str) -> tuple[list[str], float]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise NameNotFound(host) from e
    return _first_family([str(info[4][0]) for info in infos]), HOSTS_TTL


def _first_family(addresses: list[str]) -> list[str]:
    """IPv4 addresses when there are any, else the IPv6 ones (as Kong takes A before AAAA)."""
    v4 = [a for a in addresses if ":" not in a]
    return _unique(v4 or addresses)


def _unique(addresses: list[str]) -> list[str]:
    return list(dict.fromkeys(addresses))
