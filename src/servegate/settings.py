"""Settings named like kong.conf properties.

Each setting is read from `SERVEGATE_<NAME>`, then `KONG_<NAME>` (so a Kong `.env` keeps working), then an
optional conf file (`name = value` lines), then its default. A bad value raises SettingsError with one line
that names the setting; `servegate start` prints that line and exits.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Listen:
    host: str
    port: int
    ssl: bool = False
    reuseport: bool = True

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" + (" ssl" if self.ssl else "")


def _parse_listen(value: str) -> list[Listen]:
    out: list[Listen] = []
    for part in value.split(","):
        words = part.split()
        if not words:
            continue
        if words[0] == "off":
            return []
        addr, flags = words[0], words[1:]
        unknown = [f for f in flags if f not in ("ssl", "reuseport", "http2", "bind", "deferred")]
        if unknown:
            raise ValueError(f"unknown flag {unknown[0]!r} in {part.strip()!r}")
        if addr.startswith("["):
            host, _, rest = addr[1:].partition("]")
            port_s = rest.lstrip(":")
        else:
            host, sep, port_s = addr.rpartition(":")
            if not sep:
                raise ValueError(f"{part.strip()!r} is not host:port")
        try:
            port = int(port_s)
        except ValueError:
            raise ValueError(f"bad port in {part.strip()!r}") from None
        if not 0 <= port <= 65535:
            raise ValueError(f"port out of range in {part.strip()!r}")
        out.append(Listen(host or "0.0.0.0", port, "ssl" in flags))
    return out


def _parse_bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("on", "true", "1", "yes"):
        return True
    if v in ("off", "false", "0", "no"):
        return False
    raise ValueError(f"expected on/off, got {value!r}")


def _parse_int(lo: int, hi: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        n = int(value)
        if not lo <= n <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return n

    return parse


def _parse_float(value: str) -> float:
    f = float(value)
    if f < 0:
        raise ValueError("must not be negative")
    return f


def _parse_workers(value: str) -> int:
    if value.strip() == "auto":
        return os.cpu_count() or 1
    return _parse_int(1, 256)(value)


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        v = value.strip()
        if v not in choices:
            raise ValueError(f"expected one of: {', '.join(choices)}")
        return v

    return parse


def _parse_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _parse_urls(value: str) -> list[str]:
    """Comma-separated absolute http(s) URLs (admin_gui_url: each one's origin may use the Admin API)."""
    from urllib.parse import urlsplit

    urls = _parse_list(value)
    for url in urls:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as e:
            raise ValueError(f"'{url}' is not a URL: {e}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"'{url}' is not an http:// or https:// URL")
    return urls


def _str(value: str) -> str:
    return value


_PLUGIN_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")


def _parse_plugins(value: str) -> tuple[str, ...]:
    """Kong's `plugins`: `bundled`, `off`, plugin names (see docs/configuration.md, "Plugins")."""
    names = tuple(dict.fromkeys(_parse_list(value)))
    if not names:
        raise ValueError("expected `bundled`, `off` or plugin names")
    if "off" in names and len(names) > 1:
        raise ValueError("`off` cannot be combined with other entries")
    for n in names:
        if not _PLUGIN_NAME.match(n):
            raise ValueError(f"'{n}' is not a plugin name (lower-case letters, digits, - and _)")
    return names


_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024 * 1024, "g": 1024 * 1024 * 1024}


def _parse_size(value: str) -> int:
    """nginx sizes: bytes, or a number with k or m (g) suffix."""
    m = re.fullmatch(r"\s*(\d+)\s*([kmg]?)\s*", value.lower())
    if m is None:
        raise ValueError("expected a size: bytes, or a number with k, m or g")
    n = int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    if n < 1:
        raise ValueError("must be at least 1 byte")
    return n


def _opt_str(value: str) -> str | None:
    return value or None


# name -> (default as conf text, parser, description); the README table is written from this.
SPEC: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "prefix": ("~/.servegate", _str, "Working directory: SQLite file, generated TLS certificate, counters."),
    "proxy_listen": ("0.0.0.0:8000, 0.0.0.0:8443 ssl", _parse_listen,
                     "Proxy listeners, comma-separated `host:port [ssl]`; `off` disables."),
    "admin_listen": ("127.0.0.1:8001", _parse_listen, "Admin API listeners (loopback by default); `off` disables."),
    "status_listen": ("off", _parse_listen,
                      "Status listeners (`/status`, plugin status endpoints), e.g. `127.0.0.1:8100`; `off` by default."),
    "database": ("sqlite", _one_of("sqlite", "postgres"), "`sqlite` (embedded file under prefix) or `postgres`."),
    "sqlite_path": ("", _str, "SQLite file; default `<prefix>/servegate.db`."),
    "pg_host": ("127.0.0.1", _str, "PostgreSQL host."),
    "pg_port": ("5432", _parse_int(1, 65535), "PostgreSQL port."),
    "pg_user": ("kong", _str, "PostgreSQL user."),
    "pg_password": ("", _str, "PostgreSQL password."),
    "pg_password_file": ("", _str, "File holding the PostgreSQL password (Docker secret); wins over pg_password."),
    "pg_database": ("kong", _str, "PostgreSQL database."),
    "pg_timeout": ("5000", _parse_int(1, 3_600_000), "PostgreSQL connect/query timeout in ms."),
    "pg_ssl": ("off", _parse_bool, "Use TLS to PostgreSQL."),
    "log_level": ("notice", _one_of("debug", "info", "notice", "warn", "error", "crit"), "Log level."),
    "workers": ("1", _parse_workers, "Proxy worker processes sharing the listeners (`auto` = one per core)."),
    "ssl_cert": ("", _opt_str, "PEM certificate for `ssl` listeners; a self-signed one is generated if unset."),
    "ssl_cert_key": ("", _opt_str, "PEM key for ssl_cert."),
    "proxy_access_log": ("stdout", _str, "`stdout`, `off` or a file path."),
    "proxy_access_log_format": ("text", _one_of("text", "json"),
                                "Access log line format: `text` (one space-separated line) or `json` (one object)."),
    "trusted_ips": ("", _parse_list, "Peers whose X-Forwarded-* headers are trusted (IPs/CIDRs)."),
    "real_ip_header": ("X-Real-IP", _str, "Header carrying the client address from a trusted peer."),
    "error_default_type": ("text/plain", _one_of("text/plain", "application/json", "text/html", "application/xml"),
                           "Body type for proxy errors when the request says nothing."),
    "client_header_timeout": ("60", _parse_float, "Seconds a client may take to send its request headers."),
    "keepalive_timeout": ("75", _parse_float, "Seconds an idle client keep-alive connection stays open."),
    "client_max_header_size": ("32768", _parse_int(1024, 1 << 24), "Max bytes of a request's header block."),
    "upstream_keepalive_pool_size": ("512", _parse_int(0, 1 << 20), "Idle upstream connections kept per host."),
    "upstream_keepalive_idle_timeout": ("60", _parse_float, "Seconds an idle upstream connection is kept."),
    "db_update_frequency": ("0.25", _parse_float, "Seconds between checks for configuration changes."),
    "lookup_cache_size": ("50000", _parse_int(1, 100_000_000),
                          "Entries per worker in each lookup cache (API keys, consumers): a bounded LRU, filled from "
                          "the database on a miss."),
    "graceful_timeout": ("30", _parse_float, "Seconds in-flight requests get to finish on SIGTERM."),
    "admin_api_key": ("", _str, "Admin key used by `servegate setup` (KONG_ADMIN_API_KEY works too)."),
    "admin_gui_url": ("", _parse_urls, "URLs (comma-separated) of browser UIs allowed to call the Admin API (CORS)."),
    "plugins": ("bundled", _parse_plugins,
                "Plugins loaded: `bundled` and/or plugin names, comma-separated; `off` = none (see Plugins)."),
    "client_body_buffer_size": ("16m", _parse_size,
                                "Largest request body a plugin may read; beyond it the request gets a 413."),
}

# kong.conf names that mean the same thing here.
ALIASES = {"nginx_worker_processes": "workers", "nginx_main_worker_processes": "workers"}


@dataclass(frozen=True)
class Settings:
    prefix: str
    proxy_listen: list[Listen]
    admin_listen: list[Listen]
    database: str
    sqlite_path: str
    pg_host: str
    pg_port: int
    pg_user: str
    pg_password: str
    pg_password_file: str
    pg_database: str
    pg_timeout: int
    pg_ssl: bool
    log_level: str
    workers: int
    ssl_cert: str | None
    ssl_cert_key: str | None
    proxy_access_log: str
    proxy_access_log_format: str
    trusted_ips: list[str]
    real_ip_header: str
    error_default_type: str
    client_header_timeout: float
    keepalive_timeout: float
    client_max_header_size: int
    upstream_keepalive_pool_size: int
    upstream_keepalive_idle_timeout: float
    db_update_frequency: float
    lookup_cache_size: int
    graceful_timeout: float
    admin_api_key: str
    admin_gui_url: list[str]
    plugins: tuple[str, ...]
    client_body_buffer_size: int
    status_listen: list[Listen] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    # Names used across the code base (docs/internals.md).
    @property
    def pg_timeout_ms(self) -> int:
        return self.pg_timeout

    @property
    def client_header_timeout_s(self) -> float:
        return self.client_header_timeout

    @property
    def keepalive_timeout_s(self) -> float:
        return self.keepalive_timeout

    @property
    def client_max_header_bytes(self) -> int:
        return self.client_max_header_size

    @property
    def upstream_keepalive_idle_timeout_s(self) -> float:
        return self.upstream_keepalive_idle_timeout

    @property
    def db_update_frequency_s(self) -> float:
        return self.db_update_frequency

    @property
    def graceful_timeout_s(self) -> float:
        return self.graceful_timeout

    def pg_dsn(self) -> str:
        from urllib.parse import quote

        auth = quote(self.pg_user, safe="")
        if self.pg_password:
            auth += ":" + quote(self.pg_password, safe="")
        host = f"[{self.pg_host}]" if ":" in self.pg_host else self.pg_host
        dsn = f"postgresql://{auth}@{host}:{self.pg_port}/{quote(self.pg_database, safe='')}"
        return dsn + ("?sslmode=require" if self.pg_ssl else "")

    def redacted(self) -> dict[str, Any]:
        """Settings as shown by the Admin API: secrets replaced."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "sources":
                continue
            v = getattr(self, f.name)
            if f.name in ("pg_password", "admin_api_key") and v:
                v = "******"
            elif isinstance(v, list):
                v = [str(x) for x in v]
            out[f.name] = v
        return out


def _read_conf(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise SettingsError(f"cannot read conf file {path}: {e.strerror}") from None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise SettingsError(f"{path}:{n}: expected 'name = value'")
        out[name.strip().lower()] = value.strip()
    return out


def load_settings(env: Mapping[str, str] | None = None, conf_path: str | None = None) -> Settings:
    env = os.environ if env is None else env
    conf_path = conf_path or env.get("SERVEGATE_CONF") or env.get("KONG_CONF") or None
    conf = _read_conf(conf_path) if conf_path else {}
    for alias, name in ALIASES.items():
        if alias in conf and name not in conf:
            conf[name] = conf.pop(alias)
    raw: dict[str, str] = {}
    sources: dict[str, str] = {}
    for name, (default, _parse, _doc) in SPEC.items():
        names = [name] + [a for a, n in ALIASES.items() if n == name]
        for prefix in ("SERVEGATE_", "KONG_"):
            hit = next((prefix + n.upper() for n in names if prefix + n.upper() in env), None)
            if hit:
                raw[name], sources[name] = env[hit], hit
                break
        else:
            if name in conf:
                raw[name], sources[name] = conf[name], f"{conf_path}"
            else:
                raw[name], sources[name] = default, "default"
    unknown = sorted(set(conf) - set(SPEC))
    if unknown:
        raise SettingsError(f"unknown setting '{unknown[0]}' in {conf_path}")
    values: dict[str, Any] = {}
    for name, (_default, parse, _doc) in SPEC.items():
        try:
            values[name] = parse(raw[name])
        except (ValueError, TypeError) as e:
            raise SettingsError(f"invalid {name} ({sources[name]}={raw[name]!r}): {e}") from None
    values["prefix"] = str(Path(os.path.expanduser(values["prefix"])).resolve())
    if not values["sqlite_path"]:
        values["sqlite_path"] = str(Path(values["prefix"]) / "servegate.db")
    if values["pg_password_file"]:
        try:
            values["pg_password"] = Path(values["pg_password_file"]).read_text().strip()
        except OSError as e:
            raise SettingsError(f"invalid pg_password_file ({values['pg_password_file']}): {e.strerror}") from None
    if bool(values["ssl_cert"]) != bool(values["ssl_cert_key"]):
        raise SettingsError("invalid ssl_cert_key: ssl_cert and ssl_cert_key must be set together")
    if not values["admin_api_key"]:
        values["admin_api_key"] = env.get("KONG_ADMIN_API_KEY", "")
    return Settings(**values, sources=sources)
