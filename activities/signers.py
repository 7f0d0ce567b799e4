"""The signer registry snapshot a transfer loads when a stage starts (validators are synchronous: the keys they
check signatures against must already be in workflow state)."""

from __future__ import annotations

import asyncpg
from pydantic import BaseModel, ConfigDict
from temporalio import activity

from tpt.keys import store
from tpt.signing import SignaturePolicy, SignerSnapshot


class SignerQuery(BaseModel):
    model_config = ConfigDict(frozen=True)

    nations: list[str]


class SignerActivities:
    """Reads with the worker's role, which may only SELECT from signer_keys; the policy is the worker's setting."""

    def __init__(self, pool: asyncpg.Pool, policy: SignaturePolicy):
        self.pool, self.policy = pool, policy

    @activity.defn(name="load_signer_registry")
    async def load_signer_registry(self, query: SignerQuery) -> SignerSnapshot:
        return await store.snapshot(self.pool, query.nations, self.policy)
