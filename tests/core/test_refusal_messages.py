"""Operator-facing refusals in Korean and English (FIX-C): the SSRF guard's refusal, which a client reads in a 400
and an operator in a subscription's `lastFailure` or a dead letter, says no URL secret; and `alarms.smtp.password`
given empty is unset, as every other secret."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from pathlib import Path
from typing import Any

import pytest

from ucity.core.config import SmtpSettings, load_settings
from ucity.core.netguard import AddressGuard, RefusedAddress


def test_a_refusal_is_korean_then_english_and_names_the_setting() -> None:
    guard = AddressGuard(["10.20.0.0/16"], "subscriptions.allowed_networks")
    with pytest.raises(RefusedAddress) as refused:
        guard.check(ipaddress.ip_address("10.21.0.1"), "notification.endpoint.uri's host")
    ko, _, en = str(refused.value).partition(" / ")
    assert "내부망" in ko and "10.21.0.1" in ko and "subscriptions.allowed_networks" in ko
    assert en.startswith("notification.endpoint.uri's host is a non-public address (10.21.0.1)")
    assert en.endswith("allow its network in subscriptions.allowed_networks")
    assert (refused.value.ko, refused.value.en) == (ko, en)  # the halves, for a caller that writes its own Korean


def test_a_refusal_without_a_setting_names_none() -> None:
    with pytest.raises(RefusedAddress) as refused:
        AddressGuard().check_host("localhost", "the host")
    assert "127.0.0.1" in refused.value.ko and "(허용하려면" not in refused.value.ko
    assert "allow its network" not in refused.value.en


async def test_a_refusal_shows_a_url_as_its_origin_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The @context guard names the URL it refuses: never its user information, path or query (a token)."""

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    url = "https://ctx-user:Pw-s3cr3t@inside.test:8443/ctx/Key-q8w7.jsonld?token=Tok-q8w7#frag"
    with pytest.raises(RefusedAddress) as refused:
        await AddressGuard().resolve("inside.test", 8443, f"@context URL {url}")
    text = str(refused.value)
    assert "@context URL https://inside.test:8443 (inside.test) is a non-public address (10.0.0.5)" in text
    for secret in ("ctx-user", "Pw-s3cr3t", "Key-q8w7", "Tok-q8w7", "frag"):
        assert secret not in text, secret
    with pytest.raises(RefusedAddress) as refused:  # an unparsable URL is left out whole
        AddressGuard().check(ipaddress.ip_address("::1"), "@context URL http://[::1/Key-q8w7")
    assert "Key-q8w7" not in str(refused.value) and "<URL>" in str(refused.value)


@pytest.mark.parametrize("empty", ["", "   "])
def test_an_empty_smtp_password_is_unset(empty: str) -> None:
    smtp = SmtpSettings(username="alarms", password=empty)
    assert smtp.password is None
    assert smtp.login is None  # no AUTH with an empty password


def test_an_empty_smtp_password_from_the_environment_or_the_file_is_unset(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "ucity.toml"
    config.write_text('[alarms.smtp]\nhost = "smtp.example"\nusername = "alarms"\npassword = ""\n')
    assert load_settings(str(config), data_dir=str(tmp_path / "d")).alarms.smtp.password is None
    monkeypatch.setenv("UCITY_ALARMS__SMTP__PASSWORD", "")
    assert load_settings(data_dir=str(tmp_path / "d")).alarms.smtp.password is None


def test_smtp_login_needs_a_user_and_a_password() -> None:
    assert SmtpSettings(username="alarms", password="Smtp-Pw-1").login == ("alarms", "Smtp-Pw-1")
    assert SmtpSettings(username="", password="Smtp-Pw-1").login is None
    assert SmtpSettings(username="alarms").login is None
