"""The integrated operation centre (issue 5): events, CCTV, nearest cameras, agencies and linkage,
footage grants with an append-only audit log, and the authentication of this API (README.md here).

Public surface: `OperationsCenter` (the platform component), `OpsApi` and `ROUTES` (the HTTP API), the
event vocabulary (`SERVICES`, `STATUSES`) and `Permission` / `Role` for code that checks access.
"""

from __future__ import annotations

from ucity.ops.api import ROUTES, OpsApi
from ucity.ops.auth import Permission, Principal, Role
from ucity.ops.center import OperationsCenter
from ucity.ops.events import SERVICES, STATUSES

__all__ = ["ROUTES", "SERVICES", "STATUSES", "OperationsCenter", "OpsApi", "Permission", "Principal", "Role"]
