"""The Temporal Web UI in a real browser: the transfer list filtered by stage, and one transfer's page.

Headless Debian Chromium driven by playwright; screenshots land in test-output/ (the README shows one).
"""

from __future__ import annotations

import asyncio
import shutil
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright
from playwright.async_api import Error as PlaywrightError
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from tpt.audit.store import AuditStore
from tpt.client import TransferClient
from tpt.devstack.temporal import TemporalDevServer
from tpt.stages import Stage

from ..conftest import eventually, free_port, server_dir
from ..workflow.conftest import drive_until, example, running_worker

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.browser

# Flags for a closed network and a root user (see the machine notes): no sandbox, no background traffic.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def ui_server() -> Iterator[TemporalDevServer]:
    with server_dir("ui") as where:
        server = TemporalDevServer(where / "temporal.db", "127.0.0.1", free_port(), free_port(), "default")
        server.start()
        yield server
        server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    assert shutil.which(CHROMIUM), "Debian's chromium is required: apt-get install -y chromium"
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


async def shot(page: Page, output_dir: Path, name: str) -> None:
    await page.screenshot(path=str(output_dir / f"{name}.png"), full_page=True)


async def test_ui_lists_transfers_by_stage_and_shows_what_one_waits_for(
    ui_server: TemporalDevServer, audit_store: AuditStore, browser: Browser, output_dir: Path
) -> None:
    client = await Client.connect(f"127.0.0.1:{ui_server.port}", data_converter=pydantic_data_converter)
    tpt = TransferClient(client, "ui-test")
    waiting, shipping, done = example("patriot-de"), example("javelin-lt"), example("nvg-nl-dcs")
    async with running_worker(client, audit_store, "ui-test"):
        for request, stage in ((waiting, Stage.ALLY_SIGNOFF), (shipping, Stage.SHIPMENT), (done, Stage.COMPLETED)):
            await tpt.submit(request)
            await drive_until(tpt, request, stop=stage)
        ui = f"http://127.0.0.1:{ui_server.ui_port}/namespaces/default/workflows"
        query = 'TransferStage="ALLY_SIGNOFF" AND DonorNation="DE"'
        await eventually(lambda: _listed(client, query, waiting.transfer_id))

        page = await browser.new_page(viewport={"width": 1600, "height": 1000})
        await page.goto(f"{ui}?query={urllib.parse.quote(query)}")
        await shows(page, waiting.transfer_id)
        assert await page.get_by_text(shipping.transfer_id).count() == 0  # filtered out: it is in SHIPMENT
        await shot(page, output_dir, "ui-transfers-awaiting-signoff")

        await page.goto(f"{ui}/{waiting.transfer_id}")
        await page.get_by_text("User Metadata").first.click(timeout=30_000)  # summary and current details
        await shows(page, "de.bafa.signer")  # the awaited signer, in the current details
        text = await all_text(page)
        assert "DE → UA: 2 line item(s), $66,340,000" in text  # the static summary
        assert "Stage: ALLY_SIGNOFF" in text and "Awaiting" in text
        assert "Patriot" in text  # static details: the line items
        await shot(page, output_dir, "ui-transfer-page")
        await page.close()
        await tpt.handle(waiting.transfer_id).terminate("test done")
        await tpt.handle(shipping.transfer_id).terminate("test done")


async def all_text(page: Page) -> str:
    """The rendered text of the page and its frames (the UI renders Markdown in sandboxed frames)."""
    texts = []
    for frame in page.frames:
        try:
            texts.append(await frame.locator("body").inner_text(timeout=2_000))
        except PlaywrightError:
            pass  # a frame that went away while we read
    return "\n".join(texts)


async def shows(page: Page, text: str, timeout: float = 30.0) -> None:
    """Wait until the rendered page shows the text (hidden copies in folded tabs do not count)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while text not in await all_text(page):
        assert asyncio.get_running_loop().time() < deadline, f"{text!r} never appeared on {page.url}"
        await asyncio.sleep(0.5)


async def _listed(client: Client, query: str, transfer_id: str) -> bool:
    return any([w.id async for w in client.list_workflows(query) if w.id == transfer_id])

