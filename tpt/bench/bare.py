"""The baseline: bare workflows issuing the same number and kinds of commands as a transfer, with empty bodies.

The plan (how many patches, appends, updates, timers, upserts, signals, local and regular activities) is read from
the histories of a real transfer run just before (tpt/bench/throughput.py `calibrate`), so the baseline follows the
transfer workflow as it changes. Shape, as the transfer's fast track: patch markers when created (each with the
server's TemporalChangeVersion upsert), local activities, an append (the request), then, open to the first
updates (the sign-offs), a stage upsert and append and a wait for those updates under a timer; more stage upserts
and appends; a first child (shipment: updates, a signal to the parent, appends around one regular activity); a
timer from that child's end cancelled by the parent's last update (the EEUM inventory) while a second child runs
(backfill: updates, each wait under a timer); a final append. Each update handler appends once, as a decision
does; appends go one at a time, as the audit trail's.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from tpt import search_attributes as sa

LONG = timedelta(days=30)  # timers are started and cancelled, never fire, as in a transfer acted on at once
_BODY = "x" * 600  # about the size of an audit event's payload


class ChildPlan(BaseModel):
    patches: int = 0  # workflow.patched calls when created (the audit trail's)
    updates: int = 0
    appends: int = 0  # in all, including one per update
    timers: int = 0
    regular: int = 0  # other regular activities, in all
    regular_with_updates: int = 0  # of which scheduled with an update's append (custody), the rest at the end (SCO)
    signal_parent: bool = False  # on the first update, as the shipment tells its parent a leg has left


class Plan(BaseModel):
    patches: int = 0  # workflow.patched calls when created (the audit trail's)
    appends_local: bool = False  # audit appends as local activities (else regular activities)
    local: int = 1  # other local activities: the first alone (reference data), the others beside appends (signers)
    appends: int = 0  # the parent's, including one per update
    updates_first: int = 0  # updates before the first child (the sign-offs)
    updates: int = 0  # the parent's, in all
    timers: int = 0
    upserts: int = 0  # of our own search attributes (not the patches' TemporalChangeVersion)
    children: list[ChildPlan] = []


class BareStatus(BaseModel):
    phase: int  # 0 before the first child, k while child k runs, len(children)+1 when done
    updates: int
    open: bool = False  # taking the first updates (as a transfer in ALLY_SIGNOFF takes sign-offs)


@activity.defn(name="bare_append")
async def bare_append(body: str) -> str:
    return ""


@activity.defn(name="bare_activity")
async def bare_activity(body: str) -> str:
    return ""


def _patch(count: int) -> None:
    for n in range(count):
        workflow.patched(f"bench-bare-{n}")


async def _activity(local: bool) -> None:
    if local:
        await workflow.execute_local_activity(bare_activity, _BODY, start_to_close_timeout=timedelta(seconds=30))
    else:
        await workflow.execute_activity(bare_activity, _BODY, start_to_close_timeout=timedelta(seconds=30))


async def _append(local: bool) -> None:
    if local:
        await workflow.execute_local_activity(bare_append, _BODY, start_to_close_timeout=timedelta(seconds=15))
    else:
        await workflow.execute_activity(bare_append, _BODY, start_to_close_timeout=timedelta(seconds=15))


class _Base:
    def __init__(self) -> None:
        self.updates = 0
        self.timers_left = 0
        self.lock = asyncio.Lock()

    async def _append(self, local: bool, beside: bool | None = None) -> None:
        """One append (one at a time, as the audit trail's); `beside`: with another activity (local if True)."""
        appending = self._locked_append(local)
        if beside is None:
            await appending
        else:
            await asyncio.gather(appending, _activity(beside))

    async def _locked_append(self, local: bool) -> None:
        async with self.lock:
            await _append(local)

    async def _wait_updates(self, n: int) -> None:
        if self.timers_left > 0:
            self.timers_left -= 1
            try:
                await workflow.wait_condition(lambda: self.updates >= n, timeout=LONG)
                return
            except TimeoutError:
                pass
        await workflow.wait_condition(lambda: self.updates >= n)


@workflow.defn(name="BareChild")
class BareChild(_Base):
    @workflow.init
    def __init__(self, plan: ChildPlan, local: bool) -> None:
        super().__init__()
        _patch(plan.patches)
        self.plan, self.local = plan, local
        self.timers_left = plan.timers
        self.with_updates_left = plan.regular_with_updates

    @workflow.run
    async def run(self, plan: ChildPlan, local: bool) -> int:
        for n in range(1, plan.updates + 1):
            await self._wait_updates(n)
        await workflow.wait_condition(workflow.all_handlers_finished)
        rest = plan.appends - plan.updates
        for i in range(rest):
            await self._append(self.local)
            if i == 0:
                for _ in range(plan.regular - plan.regular_with_updates):
                    await _activity(False)
        return self.updates

    @workflow.update
    async def step(self) -> int:
        self.updates += 1
        beside = False if self.with_updates_left > 0 else None
        self.with_updates_left -= beside is not None
        await self._append(self.local, beside)
        info = workflow.info()
        if self.updates == 1 and self.plan.signal_parent and info.parent is not None:
            await workflow.get_external_workflow_handle(info.parent.workflow_id).signal("departed")
        return self.updates

    @workflow.query
    def status(self) -> int:
        return self.updates


@workflow.defn(name="BareTransfer")
class BareTransfer(_Base):
    @workflow.init
    def __init__(self, plan: Plan) -> None:
        super().__init__()
        _patch(plan.patches)
        self.plan = plan
        self.phase = 0
        self.open = False
        self.departed = False
        self.timers_left = plan.timers
        self.upserts_left = plan.upserts
        self.local_left = max(plan.local - 1, 0)  # to run beside appends

    @workflow.run
    async def run(self, plan: Plan) -> int:
        if plan.local > 0:
            await _activity(True)
        run_appends = plan.appends - plan.updates
        if run_appends > 0:  # the request, recorded before anyone may act
            await self._append(plan.appends_local, self._beside())
        self.open = True
        if run_appends > 1:  # the first stage: its attribute and event, while the first updates may arrive
            await self._run_append()
        await self._wait_updates(plan.updates_first)
        rest = max(run_appends - 2, 0)  # one as each child starts (its stage), one at the end, the others now
        before_child = min(rest, len(plan.children))
        final = 1 if rest > before_child else 0
        for _ in range(rest - before_child - final):
            await self._run_append()
        watch: asyncio.Task[None] | None = None
        for k, child in enumerate(plan.children, start=1):
            self.phase = k
            if k <= before_child:
                await self._run_append()
            await workflow.execute_child_workflow(BareChild.run, args=[child, plan.appends_local],
                                                  id=f"{workflow.info().workflow_id}-child{k}")
            if k == 1:  # as the EEUM inventory watch: a timer from the first child's end, cancelled by an update
                watch = asyncio.create_task(self._wait_updates(plan.updates))
        if watch is not None:
            await watch
        await self._wait_updates(plan.updates)
        self.phase = len(plan.children) + 1
        await workflow.wait_condition(workflow.all_handlers_finished)
        if final:
            await self._run_append()
        while self.upserts_left > 0:
            self._upsert()
        while self.local_left > 0:
            await _activity(self._beside() or False)
        return self.updates

    def _beside(self) -> bool | None:
        """A local activity to run beside the next append, while any is left."""
        if self.local_left <= 0:
            return None
        self.local_left -= 1
        return True

    def _upsert(self) -> None:
        self.upserts_left -= 1
        workflow.upsert_search_attributes([sa.TRANSFER_STAGE.value_set(f"BARE-{self.upserts_left}")])

    async def _run_append(self) -> None:
        if self.upserts_left > 0:  # a stage change: the search attribute, then its audit event
            self._upsert()
        await self._append(self.plan.appends_local, self._beside())

    @workflow.update
    async def step(self) -> int:
        self.updates += 1
        await self._append(self.plan.appends_local)
        return self.updates

    @workflow.update
    async def ping(self) -> int:
        """An update with an empty body: the bare round trip of the latency baseline."""
        return self.updates

    @workflow.signal(name="departed")
    def on_departed(self) -> None:
        self.departed = True

    @workflow.query
    def status(self) -> BareStatus:
        return BareStatus(phase=self.phase, updates=self.updates, open=self.open)


def build_bare_worker(client: Client, task_queue: str, **options: Any) -> Worker:
    return Worker(client, task_queue=task_queue, workflows=[BareTransfer, BareChild],
                  activities=[bare_append, bare_activity], **options)
