"""Kopf's webhook server with self-signed certificates built by ``cryptography``.

Kopf builds self-signed certificates with the optional ``certbuilder``
package; kubetask already depends on ``cryptography``, so these subclasses
override :meth:`build_certificate` with it.  ``ServiceWebhookServer``
advertises the server through a Service (in-cluster) instead of a URL.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import AsyncIterator, Collection
from typing import Any

import aiohttp.web
import kopf
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def self_signed_certificate(hostnames: Collection[str], password: str | None = None) -> tuple[bytes, bytes]:
    """A self-signed CA-capable server certificate for ``hostnames`` (PEM cert, PEM key)."""
    names: list[x509.GeneralName] = []
    common_name: str | None = None
    for host in hostnames:
        if not host:
            continue
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            names.append(x509.DNSName(host))
            common_name = common_name or host
            continue
        if not ip.is_unspecified:
            names.append(x509.IPAddress(ip))
            common_name = common_name or str(ip)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or "kubetask-webhook")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


# An AdmissionReview carries the object and, on UPDATE, its old version too: a Task with a
# 1 MiB script (the seeds' limit) makes a review of 2+ MiB, past aiohttp's default 1 MiB body
# limit, which would fail closed. The apiserver's own request limit is 3 MiB per object.
MAX_REVIEW_BYTES = 8 * 1024 * 1024


class WebhookServer(kopf.WebhookServer):
    """Kopf's local HTTPS webhook server; self-signed certificates come from ``cryptography``."""

    @staticmethod
    def build_certificate(hostnames: Collection[str], password: str | None = None) -> tuple[bytes, bytes]:
        return self_signed_certificate(hostnames, password)

    @staticmethod
    async def _serve(fn: Any, request: aiohttp.web.Request) -> aiohttp.web.Response:
        # Kopf builds its aiohttp app with the default body limit; a clone of the request may
        # read more (aiohttp's public ``clone(client_max_size=...)``).
        larger = request.clone(client_max_size=MAX_REVIEW_BYTES)
        response: aiohttp.web.Response = await kopf.WebhookServer._serve(fn, larger)
        return response


class ServiceWebhookServer(WebhookServer):
    """The same server, advertised to the apiserver through a Service (in-cluster)."""

    def __init__(self, *, service_name: str, service_namespace: str, service_port: int = 443,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = {"name": service_name, "namespace": service_namespace, "port": service_port}

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        async for config in super().__call__(fn):
            advertised: dict[str, Any] = dict(config)
            advertised.pop("url", None)
            advertised["service"] = {**self.service, "path": ""}
            yield advertised
