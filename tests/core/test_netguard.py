"""The SSRF guard (ucity.core.netguard): which addresses the platform connects to on a client's behalf."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import pytest

from ucity.core.netguard import AddressGuard, RefusedAddress, non_public, parse_networks


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "224.0.0.1", "240.0.0.1", "::1", "fe80::1", "fd00::1", "::", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
    "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2002:a00:1::", "2001:0:4136:e378:8000:63bf:f5ff:fffe",
])
def test_non_public_addresses(address: str) -> None:
    assert non_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "211.234.10.1", "2001:4860:4860::8888", "::ffff:8.8.8.8",
                                     "64:ff9b::808:808", "2002:808:808::1"])
def test_public_addresses(address: str) -> None:
    assert not non_public(ipaddress.ip_address(address))


def test_allowed_networks_open_a_hole_and_nothing_more() -> None:
    guard = AddressGuard(["10.20.0.0/16", "fd00:1::/32"], "subscriptions.allowed_networks")
    assert guard.permits(ipaddress.ip_address("10.20.5.6"))
    assert guard.permits(ipaddress.ip_address("::ffff:10.20.5.6"))  # the IPv4 it carries is allowed
    assert guard.permits(ipaddress.ip_address("fd00:1::5"))
    assert guard.permits(ipaddress.ip_address("8.8.8.8"))
    for refused in ("10.21.0.1", "127.0.0.1", "169.254.169.254", "fd00:2::1"):
        assert not guard.permits(ipaddress.ip_address(refused))
    with pytest.raises(RefusedAddress, match=r"non-public address \(10\.21\.0\.1\).*subscriptions\.allowed_networks"):
        guard.check(ipaddress.ip_address("10.21.0.1"), "the endpoint")


def test_bad_networks_are_named() -> None:
    assert parse_networks(["10.0.0.0/8", " 192.168.1.7 "])[1] == ipaddress.ip_network("192.168.1.7/32")
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33'"):
        parse_networks(["10.0.0.0/33"])


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "::1", "localhost", "LOCALHOST.", "api.localhost",
                                  "169.254.169.254", "10.0.0.1"])
def test_check_host_refuses_what_is_known_without_dns(host: str) -> None:
    with pytest.raises(RefusedAddress):
        AddressGuard().check_host(host, "the host")


@pytest.mark.parametrize("host", ["example.org", "8.8.8.8", "receiver.city.go.kr"])
def test_check_host_leaves_names_to_the_connection(host: str) -> None:
    AddressGuard().check_host(host, "the host")  # no DNS here: names are checked when connecting


async def test_resolve_checks_every_address_of_a_name(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"public.test": ["203.0.113.9"], "mixed.test": ["203.0.113.9", "10.0.0.5"],
               "inside.test": ["10.20.1.1", "10.20.1.2"]}

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers[host]]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    guard = AddressGuard(["10.20.0.0/16"])
    # 203.0.113.0/24 is documentation space: Python counts it private, so allow it to stand for a public one.
    assert await AddressGuard(["203.0.113.0/24"]).resolve("public.test", 80, "x") == ["203.0.113.9"]
    with pytest.raises(RefusedAddress, match=r"mixed\.test\) is a non-public address \(10\.0\.0\.5\)"):
        await AddressGuard(["203.0.113.0/24"]).resolve("mixed.test", 80, "the endpoint's host")
    assert await guard.resolve("inside.test", 80, "x") == ["10.20.1.1", "10.20.1.2"]
    assert await guard.resolve("10.20.9.9", 80, "x") == ["10.20.9.9"]
    with pytest.raises(RefusedAddress):
        await guard.resolve("127.0.0.1", 80, "x")
    with pytest.raises(OSError):
        await guard.resolve("nowhere.test", 80, "x")


@pytest.mark.parametrize("section", [{"subscriptions": {"allowed_networks": ["10.0.0.0/33"]}},
                                     {"ngsild": {"context_allowed_networks": ["10.0.0.0/33"]}}])
def test_a_bad_allowed_network_stops_the_settings_from_loading(section: dict[str, Any], tmp_path: Any) -> None:
    from pydantic import ValidationError

    from ucity.core.config import load_settings

    with pytest.raises(ValidationError, match=r"not an IP network: '10\.0\.0\.0/33'"):
        load_settings(data_dir=str(tmp_path), **section)
