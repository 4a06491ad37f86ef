"""TLS for `ssl` listeners: the configured certificate, or a self-signed one generated once under <prefix>/ssl/."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import ssl
from pathlib import Path
from typing import Any

CERT_NAME = "servegate-default.crt"
KEY_NAME = "servegate-default.key"


def default_paths(prefix: str) -> tuple[Path, Path]:
    d = Path(prefix).expanduser() / "ssl"
    return d / CERT_NAME, d / KEY_NAME


def _generate(cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "servegate")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    # Write to temporary names and rename, so a reader never sees half a file.
    tmp_key = key_path.with_suffix(".key.tmp")
    tmp_cert = cert_path.with_suffix(".crt.tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    tmp_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp_key, key_path)
    os.replace(tmp_cert, cert_path)


def ensure_certificate(settings: Any) -> tuple[str, str]:
    """Paths of the certificate and key to serve; generates the default pair once (process-safe)."""
    if getattr(settings, "ssl_cert", None):
        return settings.ssl_cert, settings.ssl_cert_key
    cert_path, key_path = default_paths(settings.prefix)
    if cert_path.exists() and key_path.exists():
        return str(cert_path), str(key_path)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    with open(cert_path.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (cert_path.exists() and key_path.exists()):
                _generate(cert_path, key_path)
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(lock, fcntl.LOCK_UN)
    return str(cert_path), str(key_path)


def server_ssl_context(settings: Any) -> ssl.SSLContext:
    cert, key = ensure_certificate(settings)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.sni_callback = _remember_sni
    return ctx


def _remember_sni(ssl_obj: Any, server_name: str | None, ctx: ssl.SSLContext) -> None:
    # The server side of an SSLObject does not expose the client's SNI afterwards: keep it for routing.
    try:
        ssl_obj.servegate_sni = server_name or ""
    except AttributeError:
        pass


def client_sni(transport: Any) -> str:
    """The SNI a TLS client sent ("" when none)."""
    obj = transport.get_extra_info("ssl_object")
    return getattr(obj, "servegate_sni", "") if obj is not None else ""


def upstream_ssl_context(verify: bool = False) -> ssl.SSLContext:
    """Client context for https services; Kong does not verify upstream certificates unless tls_verify."""
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
