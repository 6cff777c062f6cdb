"""`ucity config validate` prints the effective settings, never a secret (QA3 F8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ucity.cli import main

TOKEN = "uct_op1_Zq7Wm2Kx9Lp4Rt8Vn3Bc6Hd"
ADMIN = "admin-secret-Yh5Tg3Rf1Ed9Ws7Qa"
SECRETS = {
    "token": TOKEN, "admin": ADMIN, "pg": "PgPass-9a8b7c", "pg_at": "p@ss-Raw-77", "bus": "NatsPw-3e4f", "mqtt": "MqPw-5g6h",
    "smtp": "SmtpPw-1q2w", "grant": "grant-Secret-4r5t", "pseudonym": "pseudo-Secret-6y7u", "hook": "hook-Secret-8i9o",
    "apikey": "ApiKey-0p1a", "domain": "dom-Secret-2s3d", "agency": "agency-Token-4f5g",
}
CONFIG = f"""
environment = "production"
[server]
require_auth = true
[store]
url = "postgresql://ucity:{SECRETS['pg']}@db.example:5432/ucity?sslmode=require&password={SECRETS['pg']}"
[bus]
url = "nats://nuser:{SECRETS['bus']}@n1.example:4222,nats://nuser:{SECRETS['bus']}@n2.example:4222"
[mqtt]
url = "mqtts://broker-user:{SECRETS['mqtt']}@broker.example:8883"
[alarms]
webhook_secret = "{SECRETS['hook']}"
[alarms.smtp]
host = "smtp.example"
username = "alarms"
password = "{SECRETS['smtp']}"
[ops]
admin_token = "{SECRETS['admin']}"
grant_secret = "{SECRETS['grant']}"
pseudonym_secret = "{SECRETS['pseudonym']}"
tokens = [
  {{id = "op1", role = "operator", token = "{TOKEN}", name = "Op One"}},
  {{id = "rd1", role = "reader", token = "{TOKEN}-rd"}},
]
[[ops.agencies]]
id = "police-112"
kind = "police"
name = {{ ko = "경찰", en = "police" }}
services = ["112_VIDEO"]
endpoint = "https://hooks.example/112?apikey={SECRETS['apikey']}&site=guro"
api_token = "{SECRETS['agency']}"
[domains]
enabled = []
[domains.some_domain]
feed_url = "https://feed.example/x?token={SECRETS['domain']}"
password = "{SECRETS['domain']}"
"""


@pytest.fixture(autouse=True)
def _no_store_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UCITY_STORE__URL", raising=False)  # the PostgreSQL run sets it; these tests read the file's


def validate(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> tuple[str, str]:
    config = tmp_path / "ucity.toml"
    config.write_text(text)
    assert main(["config", "validate", "--config", str(config), "--data-dir", str(tmp_path / "data")]) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_validate_prints_no_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, err = validate(tmp_path, capsys, CONFIG)
    assert "configuration is valid" in err
    for name, secret in SECRETS.items():
        assert secret not in out + err, name
    assert "uct_op1" not in out and "ss-Raw" not in out
    shown = json.loads(out)
    # every configured token is masked the way pydantic masks a SecretStr; the rest of the entry stays readable
    assert shown["ops"]["tokens"] == [
        {"id": "op1", "role": "operator", "token": "**********", "name": "Op One"},
        {"id": "rd1", "role": "reader", "token": "**********"}]
    assert shown["ops"]["admin_token"] == shown["ops"]["grant_secret"] == shown["alarms"]["smtp"]["password"] == "**********"
    # URLs keep where they point, without their credentials or secret query values
    assert shown["store"]["url"] == "postgresql://***@db.example:5432/ucity?sslmode=require&password=***"
    assert shown["bus"]["url"].startswith("nats://***@") and shown["bus"]["url"].endswith("n2.example:4222")
    assert shown["mqtt"]["url"] == "mqtts://***@broker.example:8883"
    assert shown["ops"]["agencies"][0]["endpoint"] == "https://hooks.example/112?apikey=***&site=guro"
    assert shown["ops"]["agencies"][0]["api_token"] == "**********"
    assert shown["domains"]["some_domain"] == {"feed_url": "https://feed.example/x?token=***", "password": "**********"}
    assert shown["ops"]["agencies"][0]["name"] == {"ko": "경찰", "en": "police"}  # not secret: as given


def test_a_password_with_a_raw_at_sign_is_masked_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """libpq and asyncpg take the last @ of the authority as the end of the user information."""
    out, _ = validate(tmp_path, capsys, f'[store]\nurl = "postgresql://ucity:{SECRETS["pg_at"]}@db.example/ucity"\n')
    assert SECRETS["pg_at"] not in out and "Raw" not in out
    assert json.loads(out)["store"]["url"] == "postgresql://***@db.example/ucity"


def test_unset_secrets_stay_visible_as_unset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = validate(tmp_path, capsys, "")
    shown = json.loads(out)
    assert shown["ops"]["admin_token"] is None and shown["ops"]["tokens"] == [] and shown["store"]["url"] == ""
    assert shown["alarms"]["smtp"]["username"] == "" and shown["server"]["port"] == 8000


def test_worker_banner_shows_no_bus_or_store_password(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`ucity worker` named its bus URL as configured, credentials included."""
    started: list[object] = []

    async def fake_worker(app: object) -> None:
        started.append(app)

    monkeypatch.setattr("ucity.cluster.worker.run_worker", fake_worker)
    monkeypatch.setattr("ucity.app.Ucity", lambda settings, role: role)  # no store, no bus: only the banner
    config = tmp_path / "ucity.toml"
    config.write_text(f'[store]\nurl = "postgresql://ucity:{SECRETS["pg"]}@db.example/ucity"\n'
                      f'[bus]\nurl = "nats://nuser:{SECRETS["bus"]}@n1.example:4222"\n')
    assert main(["worker", "--config", str(config)]) == 0
    err = capsys.readouterr().err
    assert started == ["worker"] and "n1.example:4222" in err and "db.example" in err
    assert SECRETS["bus"] not in err and SECRETS["pg"] not in err and "nuser" not in err


def test_redact_masks_a_raw_at_sign_password_whole() -> None:
    from ucity.core.logsafe import redact

    assert redact("postgresql://u:p@ss@db/x and nats://t@o@k@n1:4222") == "postgresql://***@db/x and nats://***@n1:4222"
    assert redact("contact kim@example.com about https://example.com/a") == "contact kim@example.com about https://example.com/a"
