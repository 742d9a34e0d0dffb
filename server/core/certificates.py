"""What a served TLS certificate names, checked at start: clients verify the address they dial
against the certificate's subjectAltName (gRPC and browsers ignore the common name), so a
certificate that does not name the bound address fails every client that connects by it."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

from cryptography import x509

from ..settings import ServerSettings

log = logging.getLogger(__name__)

EVERY_INTERFACE = ("0.0.0.0", "::", "[::]", "")


def certificate_names(pem: bytes) -> list[str]:
    """The DNS names and IP addresses of the first certificate of a PEM chain."""
    certificate = x509.load_pem_x509_certificate(pem)
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [
        *names.get_values_for_type(x509.DNSName),
        *(str(ip) for ip in names.get_values_for_type(x509.IPAddress)),
    ]


def _named(host: str, names: list[str]) -> bool:
    host = host.strip("[]")
    try:
        wanted = str(ipaddress.ip_address(host))
    except ValueError:
        wanted = host.lower()
    return any(wanted == name.lower() or _wildcard(name, wanted) for name in names)


def _wildcard(name: str, host: str) -> bool:
    """'*.example.com' names 'a.example.com' (one label), not 'example.com' or 'a.b.example.com'."""
    if not name.startswith("*."):
        return False
    suffix = name[1:].lower()
    return host.endswith(suffix) and "." not in host[: -len(suffix)] and host != suffix[1:]


def check_certificate_names(settings: ServerSettings, cert: Path) -> None:
    """Log the names clients may dial; warn when the bound address is not among them."""
    try:
        names = certificate_names(cert.read_bytes())
    except (OSError, ValueError) as exc:
        log.warning("cannot read the names of the TLS certificate: %s", exc)
        return
    if not names:
        log.warning(
            "the TLS certificate has no subjectAltName: clients check the address they dial "
            "against it, so none will verify (docs/security.md has a recipe with names)"
        )
        return
    log.info("TLS certificate names (what clients may dial): %s", ", ".join(names))
    hosts = {settings.host}
    if settings.http_port:
        hosts.add(settings.http_host or settings.host)
    for host in sorted(hosts - set(EVERY_INTERFACE)):
        if not _named(host, names):
            log.warning(
                "the TLS certificate does not name %s, the address this server binds: clients "
                "dialling it will fail hostname verification (names: %s)",
                host,
                ", ".join(names),
            )
