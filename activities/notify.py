"""Delivery notifications to the security cooperation offices (SCOs) of donor and recipient.

GAO (2024) found SCOs were not told when transferred articles arrived; the engine tells both. The adapter is
an interface so a real messaging system plugs in; the default writes a structured log line.
"""

from __future__ import annotations

from typing import Protocol

import structlog
from pydantic import BaseModel
from temporalio import activity

log = structlog.get_logger(__name__)


class DeliveryNotice(BaseModel):
    transfer_id: str
    donor: str
    recipient: str
    delivered_at: str
    eeum_serials: list[str]
    eeum_inventory_due: str | None


class ScoNotifier(Protocol):
    async def notify(self, office: str, notice: DeliveryNotice) -> str:
        """Send the notice to one office; return the message reference."""
        ...


class LogNotifier:
    async def notify(self, office: str, notice: DeliveryNotice) -> str:
        log.info("sco notified", office=office, transfer_id=notice.transfer_id, delivered_at=notice.delivered_at)
        return f"log:{office}:{notice.transfer_id}"


class NotifyActivities:
    def __init__(self, notifier: ScoNotifier | None = None):
        self.notifier = notifier or LogNotifier()

    @activity.defn(name="notify_security_cooperation_offices")
    async def notify_security_cooperation_offices(self, notice: DeliveryNotice) -> list[str]:
        offices = [f"SCO-{notice.donor}", f"SCO-{notice.recipient}"]
        return [await self.notifier.notify(office, notice) for office in offices]
