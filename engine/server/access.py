"""Access control shared by the listeners: the bearer token and TLS server contexts.

With a top-level ``auth: {token_env: NAME}`` the token is read from the environment when
the service starts (never from the config file, never logged); HTTP and Flight clients
then present ``Authorization: Bearer <token>``. Raw TCP has no place for a token: a TCP
listener is protected by where it binds (127.0.0.1 unless configured otherwise) and, with
``tls: {cert, key}``, by TLS.
"""

from __future__ import annotations

import hmac
import os
import ssl
from collections.abc import Mapping

from engine.config import AuthSpec, ConfigError, TlsSpec


def resolve_token(auth: AuthSpec | None, environ: Mapping[str, str] = os.environ) -> bytes | None:
    """The token clients must present, or None without ``auth``. Surrounding whitespace
    (a trailing newline from a secrets file) is dropped; a missing or empty variable is a
    ConfigError, so a service meant to be protected never starts open."""
    if auth is None:
        return None
    token = environ.get(auth.token_env, "").strip()
    if not token:
        raise ConfigError(f"auth.token_env: environment variable {auth.token_env} is not set (or empty)")
    return token.encode("utf-8", "surrogateescape")


def bearer_matches(header: bytes | str | None, token: bytes) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <token>`` (scheme in any case),
    compared in constant time."""
    if header is None:
        return False
    if isinstance(header, str):
        header = header.encode("utf-8", "surrogateescape")
    scheme, _, credentials = header.strip().partition(b" ")
    return hmac.compare_digest(credentials.strip(), token) and scheme.lower() == b"bearer"


def server_context(tls: TlsSpec) -> ssl.SSLContext:
    """A TLS 1.2+ server context with the certificate chain and key of ``tls``."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls.cert, tls.key, password=_no_pass_phrase)  # never a prompt on a tty
    return ctx


def _no_pass_phrase() -> bytes:
    raise ValueError("the private key is encrypted; Quiver takes an unencrypted key file (no pass phrase)")


def check_tls(tls: TlsSpec, where: str) -> None:
    """Raise a ConfigError naming ``where`` (a key path) if the cert or key cannot be used."""
    try:
        server_context(tls)
    except (OSError, ValueError) as exc:  # ssl.SSLError included; ValueError: an encrypted key
        detail = (exc.reason if isinstance(exc, ssl.SSLError) else getattr(exc, "strerror", None)) or str(exc)
        raise ConfigError(f"{where}: cannot load certificate {tls.cert!r} with key {tls.key!r}: {detail}") from None
