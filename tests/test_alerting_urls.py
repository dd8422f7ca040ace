"""Webhook URL policy (SSRF): every spelling of an internal address is refused, at start-up and
again at each send, and the refused targets never see a connection."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from flask_observe.alerting import Alert, DeliveryError, UnsafeURLError, UrlPolicy, build_channels

from .alert_sinks import Listener


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


#: Ways of writing 127.0.0.1 (or another internal address) that resolvers accept.
LOOPBACK_SPELLINGS = (
    "127.0.0.1",
    "localhost",
    "LOCALHOST",
    "2130706433",  # decimal
    "017700000001",  # octal
    "0x7f000001",  # hex
    "0177.0.0.1",  # dotted octal
    "127.1",  # short form
    "127.0.0.2",  # the rest of 127/8
    "[::1]",
    "[0:0:0:0:0:0:0:1]",
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[::ffff:7f00:1]",
    "[::127.0.0.1]",  # IPv4-compatible (deprecated)
    "[2002:7f00:1::1]",  # 6to4 wrapping 127.0.0.1
    "0.0.0.0",
    "0",
)

INTERNAL_ADDRESSES = (
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata (AWS, GCP, Azure)
    "100.100.100.200",  # Alibaba Cloud metadata: shared address space 100.64/10
    "100.64.0.1",  # carrier-grade NAT
    "198.18.0.1",  # benchmarking
    "192.0.2.10",  # documentation
    "224.0.0.1",  # multicast
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "[fe80::1]",  # link-local
    "[fd00::1]",  # unique local
    "[fc00::1]",
    "[fec0::1]",  # site-local (deprecated)
    "[ff02::1]",  # multicast
    "[::ffff:10.0.0.1]",
    "[::ffff:169.254.169.254]",
    "[2002:a9fe:a9fe::]",  # 6to4 wrapping 169.254.169.254
    "[2002:c0a8:0101::]",  # 6to4 wrapping 192.168.1.1
    "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254
)


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS + INTERNAL_ADDRESSES)
def test_every_spelling_of_an_internal_address_is_refused(host: str) -> None:
    """Decimal, octal, hex and short IPv4 forms, IPv4-mapped/compatible/6to4/NAT64 IPv6 forms,
    names resolving to loopback, private, link-local, shared (CGNAT, Alibaba's metadata
    address) and reserved ranges: refused, even over https."""
    policy = UrlPolicy(allow_http=True)
    with pytest.raises(UnsafeURLError):
        policy.check_url(f"https://{host}/services/SECRET")


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:2800:220:1::1946"])
def test_public_addresses_pass(address: str) -> None:
    """Public addresses (IPv4 and IPv6) are accepted: the policy is not refusing everything."""
    policy = UrlPolicy()
    policy.check_address("hooks.example.com", address)
    host = f"[{address}]" if ":" in address else address
    assert policy.check_url(f"https://{host}/x").hostname == address


def test_allowlist_by_name_address_or_network() -> None:
    """OBSERVE_ALERT_ALLOW_HOSTS takes a host name, an address or a network; nothing wider."""
    UrlPolicy(allow_hosts=("localhost",)).check_url("https://localhost/x")
    UrlPolicy(allow_hosts=("127.0.0.1",)).check_url("https://2130706433/x")
    UrlPolicy(allow_hosts=("127.0.0.0/8",)).check_url("https://127.0.0.5/x")
    UrlPolicy(allow_hosts=("::1",)).check_url("https://[::1]/x")
    with pytest.raises(UnsafeURLError):
        UrlPolicy(allow_hosts=("127.0.0.1",)).check_url("https://127.0.0.2/x")
    with pytest.raises(UnsafeURLError):
        UrlPolicy(allow_hosts=("10.0.0.0/8",)).check_url("https://[fd00::1]/x")


def test_credentials_and_odd_schemes_are_refused() -> None:
    """No user:password@ in webhook URLs, no scheme but http(s), http only when allowed."""
    for url in (
        "https://user:pw@hooks.example.com/x",
        "gopher://hooks.example.com/x",
        "file:///etc/passwd",
        "http://93.184.216.34/x",
        "https:///x",
    ):
        with pytest.raises(UnsafeURLError):
            UrlPolicy().check_url(url)


class Resolver:
    """Stands in for DNS (this machine is offline): answers each name from a list per call."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[str] = []
        self._real = socket.getaddrinfo

    def __call__(self, host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in self.answers:
            return self._real(host, port, *args, **kwargs)
        self.calls.append(host)
        queue = self.answers[host]
        address = queue.pop(0) if len(queue) > 1 else queue[0]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]


def test_dns_rebinding_after_start_up_is_caught_at_send(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name public at start-up that later resolves to loopback: the send resolves again,
    refuses the address, and the listener on loopback sees no connection."""
    resolver = Resolver({"hooks.example.test": ["93.184.216.34", "127.0.0.1"]})
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    (channel,) = build_channels(
        [{"type": "slack", "url": f"http://hooks.example.test:{listener.port}/services/x"}],
        UrlPolicy(allow_http=True),
        1.0,
    )
    with pytest.raises(DeliveryError, match=r"127\.0\.0\.1"):
        channel.send(Alert("Rebound"))
    assert resolver.calls == ["hooks.example.test", "hooks.example.test"]
    assert listener.settled() == 0


def test_a_name_with_one_internal_address_among_public_ones_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every address a name resolves to must be allowed, not just the first."""

    def both(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", both)
    with pytest.raises(UnsafeURLError, match=r"10\.0\.0\.5"):
        UrlPolicy().check_url("https://mixed.example.test/x")


def test_an_ipv6_literal_with_a_port_sends_a_valid_host_header() -> None:
    """``http://[::1]:port/`` (allowlisted) is posted with ``Host: [::1]:port``, brackets kept
    (``::1:port`` is not a valid Host header and proxies answer 400)."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    hosts: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hosts.append(self.headers.get("Host"))
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    class Server(HTTPServer):
        address_family = socket.AF_INET6

    server = Server(("::1", 0), Handler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        (channel,) = build_channels(
            [{"type": "webhook", "url": f"http://[::1]:{port}/hook"}],
            UrlPolicy(allow_http=True, allow_hosts=("::1",)),
            2.0,
        )
        channel.send(Alert("V6"))
    finally:
        server.shutdown()
        server.server_close()
    assert hosts == [f"[::1]:{port}"]
