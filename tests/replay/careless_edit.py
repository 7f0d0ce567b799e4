"""A workflow as a careless edit would leave it: one more command (a timer) and no `workflow.patched` guard.

In its own module because the sandbox re-imports the module that defines a workflow.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from tpt.messages import TransferInput, TransferStatus
    from tpt.stages import Stage
    from workflows.transfer import TransferWorkflow


@workflow.defn(name="TransferWorkflow")
class TransferWorkflowWithAnUnguardedTimer(TransferWorkflow):
    @workflow.init
    def __init__(self, input: TransferInput) -> None:
        super().__init__(input)

    @workflow.run
    async def run(self, input: TransferInput) -> TransferStatus:
        return await super().run(input)

    async def _enter(self, stage: Stage, payload: dict[str, Any] | None = None) -> None:
        await workflow.sleep(timedelta(seconds=1))
        await super()._enter(stage, payload)
