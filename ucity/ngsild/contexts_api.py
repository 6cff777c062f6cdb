"""The `/jsonldContexts` endpoints (CIM 009 §5.13) and the wiring of the context services.

The registry and resolver live in context.py; this module persists hosted contexts in the
store, restores them at start, and adapts the registry to framework-free handlers.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ucity.core.config import Settings
from ucity.core.http import Req, Resp
from ucity.ngsild.context import ContextRegistry, ContextResolver, StoredContext
from ucity.ngsild.request import JSON, JSONLD, bool_param, negotiate, read_body
from ucity.store.base import Store

KIND = "jsonld-context"
GLOBAL = ""  # hosted contexts are not per tenant


class ContextsService:
    """Component owning the resolver's lifecycle and the hosted-context handlers."""

    def __init__(self, store: Store, resolver: ContextResolver, registry: ContextRegistry) -> None:
        self.store = store
        self.resolver = resolver
        self.registry = registry

    async def start(self) -> None:
        records = [StoredContext.from_dict(doc) for _, _, doc in await self.store.list_docs(KIND)]
        self.registry.restore(records)

    async def stop(self) -> None:
        close = getattr(self.resolver, "aclose", None)
        if close is not None:
            await close()

    def health(self) -> dict[str, Any]:
        return {"ok": True, "cached": len(self.resolver.cached())}

    async def add(self, req: Req) -> Resp:
        """Add a JSON-LD @context to the broker's store (§5.13.2): 201 with the URL it is served at."""
        body = read_body(req, (JSON, JSONLD))
        # The URL the client reached the broker at (server.public_url when configured, see server.adapt).
        url = await self.registry.add(body, base_url=req.base_url)
        return Resp(201, None, {"Location": url})

    async def list(self, req: Req) -> Resp:
        """The stored @contexts (§5.13.3): URLs, or with `details=true` their kind and use."""
        negotiate(req)
        details = bool_param(req, "details")
        kind = req.param("kind")
        body = self.registry.list(details=True, kind=kind) if details else self.registry.list(kind=kind)
        return Resp(200, body)

    async def retrieve(self, req: Req) -> Resp:
        """One stored @context (§5.13.4), or with `details=true` what is known of it."""
        # A context document is JSON-LD, but served as the client asks (application/json by default,
        # as the conformance suite expects; JSON-LD processors ask for application/ld+json).
        accept = negotiate(req)
        details = bool_param(req, "details")
        body = self.registry.get(req.path_params["contextId"], details=details)
        return Resp(200, body, media_type=JSON if details else accept)

    async def delete(self, req: Req) -> Resp:
        """Delete a stored @context (§5.13.5); `reload=true` fetches a cached one again instead."""
        await self.registry.delete(req.path_params["contextId"], reload=bool_param(req, "reload"))
        return Resp(204)


def build_context_services(store: Store, settings: Settings) -> tuple[ContextResolver, ContextsService]:
    cfg = settings.ngsild
    block_private = settings.contexts_guarded
    resolver = ContextResolver(timeout=cfg.context_fetch_timeout_s, ttl=timedelta(seconds=cfg.context_cache_ttl_s),
                               cache_size=cfg.context_cache_size, block_private_networks=block_private,
                               allowed_networks=cfg.context_allowed_networks)
    base = settings.server.public_url or f"http://{settings.server.host}:{settings.server.port}"

    async def save(record: StoredContext) -> None:
        await store.put_doc(KIND, GLOBAL, record.local_id, record.to_dict())

    async def delete(local_id: str) -> None:
        await store.delete_doc(KIND, GLOBAL, local_id)

    registry = ContextRegistry(base, resolver, save=save, delete=delete)
    return resolver, ContextsService(store, resolver, registry)
