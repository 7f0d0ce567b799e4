"""Registering custody of EEUM articles when a shipment leg leaves (Enhanced End-Use Monitoring).

Serial-numbered EEUM articles are tracked from hand to hand; when a leg has left, the handover is registered with
the EEUM registry (DSCA's database, through the security cooperation office). The step is irreversible: the
articles are on the road, so the registration may be retried but never skipped. The adapter is an interface so the
real registry plugs in; the default writes a structured log line.
"""

from __future__ import annotations

from typing import Protocol

import structlog
from pydantic import BaseModel
from temporalio import activity

log = structlog.get_logger(__name__)


class CustodyNotice(BaseModel):
    transfer_id: str
    leg: str
    from_party: str
    to_party: str
    serials: list[str]
    departed_at: str


class EeumRegistry(Protocol):
    async def register_custody(self, notice: CustodyNotice) -> str:
        """Register who holds the serials now; return the registry's reference."""
        ...


class LogEeumRegistry:
    async def register_custody(self, notice: CustodyNotice) -> str:
        log.info("eeum custody registered", transfer_id=notice.transfer_id, leg=notice.leg, to_party=notice.to_party,
                 serials=len(notice.serials))
        return f"log:eeum:{notice.transfer_id}:{notice.leg}"


class CustodyActivities:
    def __init__(self, registry: EeumRegistry | None = None):
        self.registry = registry or LogEeumRegistry()

    @activity.defn(name="register_eeum_custody")
    async def register_eeum_custody(self, notice: CustodyNotice) -> str:
        return await self.registry.register_custody(notice)
