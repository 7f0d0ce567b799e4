"""Encryption end to end on a real dev server: what Temporal stores is ciphertext, the parties still work, a
wrong key fails clearly, and histories from before encryption carry on.

Clients and workers are built by tpt.client.connect from codec settings (the worker takes its client's converter),
on the session dev server, each test on its own task queue.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from tpt import search_attributes as sa
from tpt.audit.store import AuditStore
from tpt.client import TransferClient
from tpt.codec import EncryptionCodec, PayloadDecryptionError
from tpt.codec.keyring import parse_inline
from tpt.codec.server import CodecServer, CodecServerConfig
from tpt.devstack.temporal import default_binary
from tpt.errors import DecisionRefused
from tpt.ids import backfill_id, shipment_id
from tpt.messages import SignOff
from tpt.stages import Stage

from ..conftest import eventually, free_port
from ..workflow.conftest import drive_until, running_worker
from .canary import canary_request, outside_the_codec, payloads_in, raw_history
from .conftest import address_of, codec_client, fresh_key, inline


async def test_history_holds_only_ciphertext_while_the_parties_work_as_before(
    dev_env: WorkflowEnvironment, audit_store: AuditStore, task_queue: str, tmp_path: Path
) -> None:
    keys = inline(("k-sec-1", fresh_key()))
    client = await codec_client(dev_env, keys, tmp_path)
    tpt = TransferClient(client, task_queue)
    request, secrets = canary_request()
    async with running_worker(client, audit_store, task_queue):
        await tpt.submit(request)
        status = await drive_until(tpt, request, stop=Stage.ALLY_SIGNOFF)
        # a refusal's reason still reaches the caller in words (failure messages travel encrypted)
        with pytest.raises(DecisionRefused) as refused:
            await tpt.sign_off(request.transfer_id, SignOff(
                signer="someone.else", nation="DE", role="MOD", approve=True, request_digest=status.request_digest))
        assert refused.value.reason and "Encoded failure" not in refused.value.reason
        assert (await drive_until(tpt, request)).stage is Stage.COMPLETED

    checked = 0
    for workflow_id in (request.transfer_id, shipment_id(request.transfer_id), backfill_id(request.transfer_id)):
        events = await raw_history(client, workflow_id)
        raw = b"".join(e.SerializeToString() for e in events)
        leaked = [s for s in secrets if s.encode() in raw]
        assert not leaked, f"{workflow_id}: {leaked} stored in plain text"
        for event in events:
            for path, payload in payloads_in(event):
                checked += 1
                if outside_the_codec(path):
                    continue  # checked for leaks with the raw bytes above, and search attributes below
                assert payload.metadata.get("encoding") == b"binary/encrypted", f"{workflow_id}: {path} is plain"
                assert payload.metadata.get("encryption-key-id") == b"k-sec-1"
    assert checked > 50, "the histories should hold many payloads"

    described = await client.get_workflow_handle(request.transfer_id).describe()
    names = {key.name for key, _ in described.typed_search_attributes}
    system = {"TemporalChangeVersion", "BuildIds"}  # Temporal's own: patch ids and worker build ids
    assert names <= {key.name for key in sa.ALL} | system
    shown = json.dumps({k.name: v for k, v in described.typed_search_attributes}, default=str)
    assert not [s for s in secrets if s in shown], "search attributes must stay non-sensitive"


async def test_a_client_with_the_wrong_key_is_told_which_key_id_and_what_to_do(
    dev_env: WorkflowEnvironment, audit_store: AuditStore, task_queue: str, tmp_path: Path
) -> None:
    right = inline(("k-sec-2", fresh_key()))
    client = await codec_client(dev_env, right, tmp_path)
    request, _ = canary_request()
    async with running_worker(client, audit_store, task_queue):
        await TransferClient(client, task_queue).submit(request)
        impostor = TransferClient(await codec_client(dev_env, inline(("k-sec-2", fresh_key())), tmp_path), task_queue)
        with pytest.raises(PayloadDecryptionError) as caught:
            await impostor.status(request.transfer_id)  # the worker answers; its answer is sealed with the real key
        assert "codec key id 'k-sec-2' failed authentication" in str(caught.value)
        stranger = TransferClient(await codec_client(dev_env, inline(("k-other", fresh_key())), tmp_path), task_queue)
        with pytest.raises(PayloadDecryptionError, match="'k-sec-2', which is not in this process's keyring"):
            await stranger.status(request.transfer_id)
        keyless = TransferClient(await codec_client(dev_env, None, tmp_path), task_queue)
        with pytest.raises(PayloadDecryptionError, match="no codec key is configured.*TPT_CODEC_KEY_FILE"):
            await keyless.status(request.transfer_id)
        await client.get_workflow_handle(request.transfer_id).terminate("test done")


async def test_a_worker_with_the_wrong_key_fails_its_task_visibly_and_recovers_with_the_right_one(
    dev_env: WorkflowEnvironment, audit_store: AuditStore, task_queue: str, tmp_path: Path
) -> None:
    right = inline(("k-sec-3", fresh_key()))
    client = await codec_client(dev_env, right, tmp_path)
    misconfigured = await codec_client(dev_env, inline(("k-sec-3", fresh_key())), tmp_path)
    request, _ = canary_request()
    tpt = TransferClient(client, task_queue)
    async with running_worker(misconfigured, audit_store, task_queue):
        await tpt.submit(request)

        async def task_failure() -> str | None:
            for event in await raw_history(client, request.transfer_id):
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                    return event.workflow_task_failed_event_attributes.failure.message
            return None

        message = await eventually(task_failure, timeout=30)
    # readable in the history (and the UI) by anyone: it names the key id and the fix, nothing of the request
    assert "codec key id 'k-sec-3' failed authentication" in message
    assert "TPT_CODEC_KEY_FILE" in message
    async with running_worker(client, audit_store, task_queue):
        # the server retries a failing workflow task with a growing backoff: wait for the next attempt to succeed
        # (queries wait for it too) before driving the transfer on
        async def task_completed() -> bool:
            events = await raw_history(client, request.transfer_id)
            return any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED for e in events)

        await eventually(task_completed, timeout=120, interval=0.5)
        assert (await drive_until(tpt, request, stop=Stage.SHIPMENT)).stage is Stage.SHIPMENT
    await client.get_workflow_handle(request.transfer_id).terminate("test done")


async def test_a_transfer_started_before_encryption_carries_on_after_it_is_turned_on(
    dev_env: WorkflowEnvironment, audit_store: AuditStore, task_queue: str, tmp_path: Path
) -> None:
    plain = await codec_client(dev_env, None, tmp_path)
    request, secrets = canary_request()
    await TransferClient(plain, task_queue).submit(request)  # no worker yet: the input stays plain in history
    encrypted = await codec_client(dev_env, inline(("k-sec-4", fresh_key())), tmp_path)
    tpt = TransferClient(encrypted, task_queue)
    async with running_worker(encrypted, audit_store, task_queue):
        assert (await drive_until(tpt, request)).stage is Stage.COMPLETED
    events = await raw_history(encrypted, request.transfer_id)
    started = events[0].workflow_execution_started_event_attributes.input.payloads[0]
    assert started.metadata["encoding"] == b"json/plain"  # as written then: histories are never rewritten
    later = [(path, p) for e in events[1:] for path, p in payloads_in(e) if not outside_the_codec(path)]
    assert later
    assert [path for path, p in later if p.metadata.get("encoding") != b"binary/encrypted"] == []


async def test_the_temporal_cli_decrypts_through_the_codec_server_only_with_the_token(
    dev_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    keys = inline(("k-sec-5", fresh_key()))
    client = await codec_client(dev_env, keys, tmp_path)
    request, _ = canary_request()
    await TransferClient(client, task_queue).submit(request)  # no worker needed: the input is in the first event
    codec = EncryptionCodec(parse_inline(keys))
    with CodecServer(CodecServerConfig(codec, port=free_port(), token="cli-token")) as server:

        def show(*auth: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(default_binary()), "workflow", "show", "-w", request.transfer_id, "--address",
                 address_of(dev_env), "--codec-endpoint", server.url, *auth, "-o", "json"],
                capture_output=True, text=True, timeout=60)

        shown = await asyncio.to_thread(show, "--codec-auth", "Bearer cli-token")
        refused = await asyncio.to_thread(show)
    assert shown.returncode == 0, shown.stderr
    started = json.loads(shown.stdout)["events"][0]["workflowExecutionStartedEventAttributes"]
    [payload] = started["input"]["payloads"]
    assert base64.b64decode(payload["metadata"]["encoding"]) == b"json/plain"  # decrypted by the codec server
    shown_input = json.loads(base64.b64decode(payload["data"]))["request"]
    assert shown_input["end_user"] == request.end_user
    assert shown_input["items"][0]["serials"] == request.items[0].serials
    assert refused.returncode != 0  # no token: the codec server answers 401 and the CLI shows nothing
    assert request.end_user not in refused.stdout + refused.stderr
    await client.get_workflow_handle(request.transfer_id).terminate("test done")
