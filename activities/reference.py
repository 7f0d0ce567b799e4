"""Reference data a transfer needs in its own state: who may sign and review, which frameworks are active."""

from __future__ import annotations

from importlib import resources

from temporalio import activity

from tpt import registry
from tpt.messages import ReferenceData
from tpt.policy import parse_frameworks


def active_frameworks_json() -> str:
    return resources.files("tpt").joinpath("data/frameworks.json").read_text(encoding="utf-8")


@activity.defn(name="load_reference_data")
async def load_reference_data(donor: str) -> ReferenceData:
    return ReferenceData(registry=registry.for_donor(donor), frameworks=parse_frameworks(active_frameworks_json()))
