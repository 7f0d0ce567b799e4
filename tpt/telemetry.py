"""Metrics: the Temporal runtime's Prometheus endpoint, which also serves the project's own `tpt_*` metrics."""

from __future__ import annotations

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

# The project's own metrics, emitted from workflow code through `workflow.metric_meter()` (replay-safe).
# Exported under these names beside the SDK's own `temporal_*` metrics.
TRANSFERS_STARTED = "tpt_transfers_started"
TRANSFERS_FINISHED = "tpt_transfers_finished"
STAGE_DURATION = "tpt_stage_duration"
ATTENTION_RAISED = "tpt_attention_raised"
ATTENTION_CLEARED = "tpt_attention_cleared"


def install_metrics(bind_address: str) -> str:
    """Serve metrics at http://BIND/metrics for every client and worker of this process; returns that URL.

    Must run before the first client connects (the runtime is chosen then)."""
    telemetry = TelemetryConfig(metrics=PrometheusConfig(bind_address=bind_address))
    Runtime.set_default(Runtime(telemetry=telemetry), error_if_already_set=True)
    return f"http://{bind_address}/metrics"
