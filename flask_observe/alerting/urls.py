"""Webhook URLs are checked before anything is sent to them (SSRF).

At start-up each URL must be ``https`` (``http`` only with ``OBSERVE_ALERT_ALLOW_HTTP``) and
its host must resolve to global unicast addresses only (not loopback, private, link-local,
shared 100.64/10, multicast, reserved, unspecified, nor an IPv4-mapped or 6to4 form of those)
unless that host, address or network is in ``OBSERVE_ALERT_ALLOW_HOSTS``.
The same check runs again on the addresses resolved at each send (DNS may have changed), the
connection goes to the address that was checked, and redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

__all__ = ["UnsafeURLError", "UrlPolicy"]

logger = logging.getLogger("flask_observe.alerting")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class UnsafeURLError(ValueError):
    """A webhook URL is refused; the message says why (never the URL's secret path)."""


class _Unresolved(UnsafeURLError):
    """The host does not resolve (now)."""


@dataclass(frozen=True)
class UrlPolicy:
    """Which webhook targets are allowed.

    :param allow_http: accept ``http://`` URLs.
    :param allow_hosts: host names, addresses or CIDR networks allowed even though internal.
    """

    allow_http: bool = False
    allow_hosts: tuple[str, ...] = ()

    def _allowed_networks(self) -> list[Network]:
        out: list[Network] = []
        for entry in self.allow_hosts:
            try:
                out.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                continue
        return out

    def check_url(self, url: str) -> SplitResult:
        """Validate the form of ``url`` and where it resolves to now.

        :raises UnsafeURLError: if it may not be used.
        """
        parts = urlsplit(url)
        where = f"{parts.scheme}://{parts.hostname or '?'}"
        if parts.scheme not in ("https", "http"):
            raise UnsafeURLError(f"{where}: only https URLs are accepted")
        if parts.scheme == "http" and not self.allow_http:
            raise UnsafeURLError(f"{where}: http is refused (https only unless allowed)")
        if not parts.hostname:
            raise UnsafeURLError(f"{where}: no host")
        if parts.username or parts.password:
            raise UnsafeURLError(f"{where}: credentials in the URL are refused")
        try:
            parts.port  # noqa: B018 - raises on an invalid port
        except ValueError:
            raise UnsafeURLError(f"{where}: invalid port") from None
        try:
            self.resolve(parts)
        except _Unresolved:
            # DNS down at start-up must not stop the app: every send resolves and checks again.
            logger.warning(
                "alert webhook host %s does not resolve now; it is checked again at each send",
                parts.hostname,
            )
        return parts

    def resolve(self, parts: SplitResult) -> list[str]:
        """The addresses of the URL's host that may be connected to (at least one).

        :raises UnsafeURLError: if the host does not resolve or any address is internal and
            not allowlisted.
        """
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise _Unresolved(f"{parts.scheme}://{host}: does not resolve ({exc})") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in addresses:
            self.check_address(host, address)
        if not addresses:
            raise UnsafeURLError(f"{parts.scheme}://{host}: does not resolve")
        return addresses

    def check_address(self, host: str, address: str) -> None:
        """Refuse an internal ``address`` of ``host`` unless allowlisted."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if not _internal(ip):
            return
        if host.lower() in (h.lower() for h in self.allow_hosts):
            return
        if any(ip in network for network in self._allowed_networks()):
            return
        raise UnsafeURLError(
            f"{host} resolves to {ip}, a loopback/private/link-local address: add it to"
            " OBSERVE_ALERT_ALLOW_HOSTS if this target is intended"
        )


def _internal(ip: Address) -> bool:
    """Anything but a globally reachable unicast address: loopback, private, link-local,
    shared (100.64/10, where Alibaba Cloud's metadata service lives), reserved, multicast…
    An IPv6 address carrying an IPv4 one (6to4) is judged by the IPv4 address too."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.sixtofour
        if embedded is not None and _internal(embedded):
            return True
        if ip.is_site_local:
            return True
    return bool(
        not ip.is_global
        or ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )
