"""The dashboard's top-bar sign-in markup and the alarm list's entity-type filter labels, as the page renders them.

QA found the entity-type filter in English in the Korean page: known types now show their catalogue label
(`entityType.<Type>`, in both languages), a type the catalogue does not know its own name.
"""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from ucity.web import i18n

TYPE_SELECT = re.compile(r'<select name="type">(.*?)</select>', re.S)


def type_options(html: str) -> dict[str, tuple[str, str | None]]:
    """value -> (shown text, data-i18n key) of the entity-type filter's options."""
    match = TYPE_SELECT.search(html)
    assert match, "the alarm filters have an entity-type select"
    options = re.findall(r'<option value="([^"]*)"(?: data-i18n="([^"]+)")?>([^<]*)</option>', match.group(1))
    return {value: (text.strip(), key or None) for value, key, text in options}


def test_entity_type_filter_is_korean_in_the_korean_page_and_english_in_the_english_one(client: TestClient) -> None:
    korean = type_options(client.get("/").text)
    assert korean["StructuralSensor"] == ("구조물 계측 센서", "entityType.StructuralSensor")
    assert korean["ElderlyHome"] == ("독거노인 가구", "entityType.ElderlyHome")
    assert korean[""] == ("전체", "filter.any")
    shown = [text for value, (text, _) in korean.items() if value]
    assert len(shown) == 10 and not any(re.fullmatch(r"[A-Za-z]+", text) for text in shown), shown  # no English left
    english = type_options(client.get("/?lang=en").text)
    assert english["StructuralSensor"] == ("Structural sensor", "entityType.StructuralSensor")
    assert english["TrafficFlowObserved"] == ("Traffic flow", "entityType.TrafficFlowObserved")
    ko, en = i18n.catalogue("ko"), i18n.catalogue("en")
    assert all(f"entityType.{v}" in ko and f"entityType.{v}" in en for v in korean if v)


def test_a_type_without_a_label_shows_its_own_name(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    real = i18n.translate
    monkeypatch.setattr(i18n, "translate", lambda lang, key: key if key == "entityType.Vehicle" else real(lang, key))
    options = type_options(client.get("/").text)
    assert options["Vehicle"] == ("Vehicle", None)  # no key: the language switch leaves it alone
    assert options["Building"] == ("시설물", "entityType.Building")


def test_the_top_bar_has_one_sign_in_with_a_password_field(client: TestClient) -> None:
    html = client.get("/").text
    assert html.count('type="password"') == 1
    field = re.search(r'<input id="auth-token"[^>]*>', html)
    assert field and 'type="password"' in field.group(0) and 'autocomplete="off"' in field.group(0)
    assert re.search(r'<button type="submit" data-i18n="auth.signIn">로그인</button>', html)
    assert 'id="auth-signout" hidden data-i18n="auth.signOut">로그아웃<' in html
    english = client.get("/?lang=en").text
    assert 'data-i18n="auth.token">Access token<' in english
