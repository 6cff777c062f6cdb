"""Which network addresses the platform may connect to on a client's behalf (server-side request forgery).

An NGSI-LD client chooses URLs the platform then requests itself: a subscription's notification
endpoint, a remote @context. Without a guard, any client allowed to create a subscription could make
the platform POST into the city's internal network (an admin interface on loopback, the cloud's
metadata service at 169.254.169.254, a camera system on a private subnet) and read, from the
subscription's `status` and `lastFailure`, what answers there.

`AddressGuard` refuses the non-public addresses (loopback, private, link-local, carrier-grade NAT,
reserved, multicast, unspecified; an IPv6 address that carries an IPv4 one, IPv4-mapped, NAT64,
6to4 or Teredo, is judged as that IPv4 address) unless they are inside one of the networks the
city's IT team allows (`allowed`): a notification receiver of the operations centre on
10.20.0.0/16, say. `resolve` returns the checked
addresses of a host name, and the caller connects to one of those addresses, not to the name again:
a DNS answer that changes between the check and the connection (DNS rebinding) cannot redirect it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_CGNAT: Final = ipaddress.ip_network("100.64.0.0/10")
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")  # RFC 6598: not `is_private` in Python 3.11, not public either


class RefusedAddress(ValueError):
    """A URL's host is, or resolves to, an address the guard refuses; the text says which and why, in Korean and
    English ("한국어 / English", as every message a client or operator reads): a 400 to the client that sent the
    URL, a subscription's `lastFailure`, a webhook's dead letter. `ko` and `en` are the two halves, for a caller that
    puts its own words in one language before them. Never a URL's user information, path or query (secrets)."""

    def __init__(self, ko: str, en: str) -> None:
        super().__init__(f"{ko} / {en}")
        self.ko = ko
        self.en = en


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDR networks (`10.20.0.0/16`, `fd00::/8`) or single addresses; ValueError names a bad one."""
    out: list[IPNetwork] = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"not an IP network: {value!r} ({exc})") from None
    return tuple(out)


def non_public(address: IPAddress) -> bool:
    """Whether an address is one a request from the internet could not reach: loopback, private,
    link-local, shared (CGNAT), reserved, multicast or unspecified."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return non_public(embedded)
    return (address.is_private or address.is_loopback or address.is_link_local or address.is_reserved
            or address.is_multicast or address.is_unspecified or address in _CGNAT)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and is routed to: IPv4-mapped (::ffff:a.b.c.d), NAT64
    (64:ff9b::/96, RFC 6052), 6to4 (2002::/16) or Teredo (the client's address)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


_URL: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s]+")


def _origins(text: str) -> str:
    """`text` with every URL in it reduced to scheme://host[:port]: a refusal is shown to the client and logged,
    and a URL's user information, path and query may hold secrets (a password, a token, an api key)."""

    def origin(match: re.Match[str]) -> str:
        try:
            parts = urlsplit(match.group(0))
            host, port = parts.hostname or "", parts.port
        except ValueError:  # an unclosed IPv6 bracket, a port that is no number: nothing of it shown
            return "<URL>"
        host = f"[{host}]" if ":" in host else host
        return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")

    return _URL.sub(origin, text)


def literal_address(host: str) -> IPAddress | None:
    """The address a URL's host names literally (IPv6 with or without brackets), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class AddressGuard:
    """Refuses non-public addresses outside the allowed networks (see the module docstring)."""

    def __init__(self, allowed: Iterable[str] = (), setting: str = "") -> None:
        self.allowed = parse_networks(allowed)
        self.setting = setting  # the setting that turns the guard off or widens it, named in refusals

    def permits(self, address: IPAddress) -> bool:
        if not non_public(address):
            return True
        mapped = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
        return any(address in net or (mapped is not None and mapped in net) for net in self.allowed)

    def check(self, address: IPAddress, what: str) -> None:
        """RefusedAddress unless the guard permits `address`; `what` names it for the message (a URL in it is
        reduced to its scheme, host and port)."""
        if not self.permits(address):
            hint_ko = f"(허용하려면 그 네트워크를 {self.setting}에 넣으십시오)" if self.setting else ""
            hint = f"; allow its network in {self.setting}" if self.setting else ""
            raise RefusedAddress(f"내부망(비공개) 주소 {address}에는 클라이언트를 대신해 연결하지 않습니다{hint_ko}",
                                 f"{_origins(what)} is a non-public address ({address}), which this platform does "
                                 f"not connect to on a client's behalf{hint}")

    def check_host(self, host: str, what: str) -> None:
        """Refuse a host that is a refused address literally, or `localhost`: what can be told without DNS."""
        address = literal_address(host)
        name = host.rstrip(".").lower()
        if address is None and (name in ("localhost", "localhost.localdomain") or name.endswith(".localhost")):
            address = ipaddress.ip_address("127.0.0.1")  # RFC 6761: always loopback
        if address is not None:
            self.check(address, what)

    async def resolve(self, host: str, port: int, what: str) -> list[str]:
        """The addresses of `host` to connect to, all checked; RefusedAddress if any is refused (a name that
        resolves to a public and a private address is refused: which one a connection takes is not
        the guard's to choose), OSError if the name does not resolve."""
        address = literal_address(host)
        if address is not None:
            self.check(address, what)
            return [str(address)]
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        found: list[str] = []
        for info in infos:
            text = str(info[4][0]).split("%", 1)[0]  # an IPv6 scope id is not part of the address
            self.check(ipaddress.ip_address(text), f"{what} ({host})")
            if info[4][0] not in found:
                found.append(str(info[4][0]))
        if not found:
            raise OSError(f"{host} has no address")
        return found
