"""QA15 F3 at issue time: an agency token issued bound to no tenant while its agency exists in more than one tenant
is answered with the start's warning (`warnings`, Korean and English) and logged, not only at the next start."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from tests.ops.conftest import MakeOps
from tests.ops.support import TENANT, Ops, agency

CITYB = "urn:ngsi-ld:tenant:cityb"
HANGUL = re.compile("[가-힣]")


async def _issue(ops: Ops, body: dict[str, Any]) -> dict[str, Any]:
    resp = await ops.call("create_token", "POST", "/api/v1/auth/tokens", body, role="admin")
    assert resp.status == 201
    issued: dict[str, Any] = resp.body
    return issued


async def test_an_unbound_agency_token_of_several_tenants_is_issued_with_a_warning(
        make_ops: MakeOps, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ucity.ops.auth")
    async with make_ops(cameras=False, agencies=[agency("police-112", "police", ["112_DISPATCH"])]) as ops:
        # one tenant: nothing to say
        alone = await _issue(ops, {"id": "police-2", "role": "agency", "agency": "police-112"})
        assert "warnings" not in alone
        # a second tenant (a token bound to it): the configured police agency exists in both
        await _issue(ops, {"id": "reader-b", "role": "reader", "tenant": CITYB})
        issued = await _issue(ops, {"id": "police-3", "role": "agency", "agency": "police-112"})
        (warning,) = issued["warnings"]
        ko, en = warning.split(" / ")
        assert HANGUL.search(ko) and not HANGUL.search(en)
        assert "police-3" in en and CITYB in en and TENANT in en and '"tenant"' in en
        assert issued["token"]  # issued all the same: a warning, not a refusal
        assert any("police-3" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
        # bound to a tenant, or no agency token: nothing to warn of
        bound = await _issue(ops, {"id": "police-4", "role": "agency", "agency": "police-112", "tenant": TENANT})
        operator = await _issue(ops, {"id": "op-2", "role": "operator"})
        assert "warnings" not in bound and "warnings" not in operator
        assert "police-4" not in caplog.text and "op-2" not in caplog.text
