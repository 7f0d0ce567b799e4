"""The Temporal Web UI with payload encryption: Temporal holds only ciphertext, the UI pointed at `tpt`'s codec
server shows the transfer in plain text, and a token-protected codec server decrypts only for a logged-in browser.

Headless Debian Chromium driven by playwright; screenshots land in test-output/.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright
from pydantic import SecretStr
from temporalio.client import Client

from tpt.audit.store import AuditStore
from tpt.client import TransferClient, connect
from tpt.codec import EncryptionCodec, keyring_for
from tpt.codec.server import CodecServer, CodecServerConfig
from tpt.contract import TransferRequest
from tpt.devstack.temporal import TemporalDevServer
from tpt.settings import Settings
from tpt.stages import Stage

from ..conftest import free_port, server_dir
from ..security.canary import canary_request, raw_history
from ..security.conftest import fresh_key, inline
from ..workflow.conftest import drive_until, running_worker
from .test_temporal_ui import CHROMIUM, CHROMIUM_ARGS, all_text, shot, shows

pytestmark = pytest.mark.browser
TOKEN = "codec-ui-test-token"


class EncryptedStack:
    """A dev server whose UI calls an open codec server; a second codec server that wants a token; one keyring."""

    def __init__(self, where: Path):
        port, self.ui_port = free_port(), free_port()
        self.settings = Settings(temporal_address=f"127.0.0.1:{port}", ui_port=self.ui_port, state_dir=where,
                                 codec_keys=SecretStr(inline(("k-ui", fresh_key()))), codec_key_file=None)
        codec = EncryptionCodec(keyring_for(self.settings))
        self.ui = f"http://127.0.0.1:{self.ui_port}"
        self.open_codec = CodecServer(CodecServerConfig(codec, port=free_port(), origins=[self.ui]))
        self.token_codec = CodecServer(CodecServerConfig(codec, port=free_port(), origins=[self.ui], token=TOKEN))
        self.server = TemporalDevServer(where / "temporal.db", "127.0.0.1", port, self.ui_port, "default",
                                        codec_endpoint=self.open_codec.url)

    def workflow_page(self, workflow_id: str) -> str:
        return f"{self.ui}/namespaces/default/workflows/{workflow_id}"


@pytest.fixture(scope="module")
def stack() -> Iterator[EncryptedStack]:
    with server_dir("codec-ui") as where:
        stack = EncryptedStack(where)
        with stack.open_codec, stack.token_codec:
            stack.server.start()
            try:
                yield stack
            finally:
                stack.server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    assert shutil.which(CHROMIUM), "Debian's chromium is required: apt-get install -y chromium"
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest_asyncio.fixture(loop_scope="session")
async def waiting_transfer(stack: EncryptedStack, audit_store: AuditStore
                           ) -> AsyncIterator[tuple[TransferRequest, list[str], Client]]:
    """A canary transfer waiting for ally sign-off, submitted and worked on with encryption on."""
    client = await connect(stack.settings)
    tpt = TransferClient(client, "codec-ui-test")
    request, secrets = canary_request()
    async with running_worker(client, audit_store, "codec-ui-test"):
        await tpt.submit(request)
        await drive_until(tpt, request, stop=Stage.ALLY_SIGNOFF)
        yield request, secrets, client
        await tpt.handle(request.transfer_id).terminate("test done")


async def input_text(page: Page) -> str:
    """The page's text with every code viewer scrolled through (they render only the lines in view)."""
    seen = [await all_text(page)]
    viewers = page.locator(".cm-scroller")
    for n in range(await viewers.count()):
        await viewers.nth(n).evaluate("e => e.scrollTop = e.scrollHeight")
    await asyncio.sleep(0.5)
    seen.append(await all_text(page))
    return "\n".join(seen)


async def test_temporal_stores_ciphertext_and_the_ui_shows_plain_text_through_the_codec_server(
    stack: EncryptedStack, waiting_transfer: tuple[TransferRequest, list[str], Client], browser: Browser,
    output_dir: Path,
) -> None:
    request, secrets, client = waiting_transfer
    stored = b"".join(e.SerializeToString() for e in await raw_history(client, request.transfer_id))
    assert [s for s in secrets if s.encode() in stored] == [], "Temporal must hold only ciphertext"

    page = await browser.new_page(viewport={"width": 1600, "height": 1000})
    await page.goto(stack.workflow_page(request.transfer_id))
    unit, serial = request.end_user, request.items[0].serials[0]
    await shows(page, unit)  # the workflow input, decrypted by the browser through the codec server
    assert serial in await input_text(page)
    await shot(page, output_dir, "ui-codec-input-decrypted")
    await page.get_by_text("User Metadata").first.click(timeout=30_000)
    await shows(page, "Stage: ALLY_SIGNOFF")  # current details: a query answer, encrypted by the worker
    text = await all_text(page)
    assert "LT → UA: 1 line item(s)" in text  # the static summary
    assert request.items[0].nomenclature in text  # static details: the line items
    await shot(page, output_dir, "ui-codec-user-metadata-decrypted")
    await page.close()


async def test_a_token_protected_codec_server_decrypts_only_for_a_logged_in_browser(
    stack: EncryptedStack, waiting_transfer: tuple[TransferRequest, list[str], Client], browser: Browser,
    output_dir: Path,
) -> None:
    request, secrets, _ = waiting_transfer
    context = await browser.new_context(viewport={"width": 1600, "height": 1000})
    page = await context.new_page()
    await page.goto(stack.workflow_page(request.transfer_id))
    await use_codec_server_in_this_browser(page, stack.token_codec.url)

    await page.goto(stack.workflow_page(request.transfer_id))
    await shows(page, "Codec Server could not connect")  # the server answered 401: no token, no plaintext
    assert [s for s in secrets if s in await input_text(page)] == []
    await shot(page, output_dir, "ui-codec-without-token")

    login = await context.new_page()
    await login.goto(f"{stack.token_codec.url}/login")
    await login.locator("input[name=token]").fill(TOKEN)
    await login.get_by_role("button", name="Log in").click()
    await shows(login, "This browser may now decode payloads")
    await login.close()

    await page.goto(stack.workflow_page(request.transfer_id))
    await shows(page, request.end_user)
    assert request.items[0].serials[0] in await input_text(page)
    assert "Codec Server could not connect" not in await all_text(page)
    await shot(page, output_dir, "ui-codec-after-login")
    await context.close()


async def use_codec_server_in_this_browser(page: Page, endpoint: str) -> None:
    """What a person does once per browser: the UI's Codec Server settings → "Use my browser setting", the
    endpoint, "Include cross-origin credentials" (so the /login cookie is sent), Apply."""
    await page.locator('[data-testid^="data-encoder-status"]').first.click(timeout=30_000)
    dialog = page.locator("#data-encoder-settings")
    await dialog.get_by_text("Use my browser setting").click()
    await page.locator("#data-encoder-endpoint-input").fill(endpoint)
    await dialog.get_by_text("Include cross-origin credentials").click()
    await dialog.get_by_test_id("confirm-modal-button").click()
    stored = await page.evaluate("JSON.stringify([localStorage.endpoint, localStorage.includeCredentials, "
                                 "localStorage.overrideRemoteCodecConfiguration])")
    assert stored == f'["\\"{endpoint}\\"","true","true"]', stored
