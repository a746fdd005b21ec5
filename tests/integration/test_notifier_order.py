"""The notifier delivers a fetched batch across deals at once, each deal's alerts in order (real JetStream).

The deal service publishes through its relay to a real nats-server; the notifier runs in-process
with a channel of the test's own, which holds back the first alert of one deal until told: the
point is what the consumer does while a delivery is slow, not how a webhook is posted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from litestar.testing import TestClient

from dealflow.deal_lifecycle.adapters.embedded_nats import EmbeddedNats
from dealflow.notifier.alerts import Alert
from dealflow.notifier.consumer import Notifier
from dealflow.notifier.rules import load_rules
from dealflow.notifier.store import AlertStore
from tests.nats_support import wait_for_count
from tests.notifier_support import relayed_client
from tests.support import bearer


class HeldChannel:
    """Records each alert as it starts and ends; holds the first alert of `held_deal` until released."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []
        self.ended: list[tuple[str, str]] = []
        self.held_deal: str | None = None
        self.release = asyncio.Event()

    async def send(self, alert: Alert) -> None:
        self.started.append((alert.deal_id, alert.event_type))
        if alert.deal_id == self.held_deal and len([d for d, _ in self.started if d == self.held_deal]) == 1:
            await self.release.wait()
        self.ended.append((alert.deal_id, alert.event_type))

    async def close(self) -> None:
        pass


@pytest.fixture
def client(tmp_path: Path, nats_server: EmbeddedNats) -> Iterator[TestClient]:
    with relayed_client(tmp_path, nats_server.url) as test_client:
        yield test_client


def a_deal_with_a_letter_of_intent(client: TestClient, title: str) -> str:
    deal_id = str(client.post("/deals", json={"title": title, "client_name": "Acme Ltd", "owner": "ann"}, headers=bearer(sub="crm")).json()["id"])
    assert client.post(f"/deals/{deal_id}/letter-of-intent", headers=bearer(sub="crm")).status_code == 200
    return deal_id


def test_a_slow_alert_for_one_deal_holds_up_only_that_deal_and_each_deal_s_alerts_keep_their_order(
    client: TestClient, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    slow, quick = a_deal_with_a_letter_of_intent(client, "Slow Co"), a_deal_with_a_letter_of_intent(client, "Quick Co")
    assert wait_for_count(nats_server.url, 4) == 4  # both deals' events are in the stream: one fetched batch
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(
        '[channels.held]\ntype = "log"\n\n[recipients.ops]\nchannel = "held"\n\n'
        '[[rules]]\nname = "every step"\nevents = ["DealOpened", "LetterOfIntentSigned"]\nnotify = ["ops"]\n'
    )
    channel = HeldChannel()
    channel.held_deal = slow
    store = AlertStore(sqlite_path=tmp_path / "alerts.sqlite3")

    async def run() -> None:
        nc = await nats.connect(nats_server.url)
        stop = asyncio.Event()
        notifier = asyncio.create_task(Notifier(nc, load_rules(rules_file), store, {"held": channel}).run(stop))
        try:
            async with asyncio.timeout(20):
                while len(channel.ended) < 2:  # the quick deal's two alerts, while the slow deal's first is held
                    await asyncio.sleep(0.02)
            assert channel.ended == [(quick, "DealOpened"), (quick, "LetterOfIntentSigned")]
            assert [(d, t) for d, t in channel.started if d == slow] == [(slow, "DealOpened")]  # its next one waits its turn
            channel.release.set()
            async with asyncio.timeout(20):
                while len(channel.ended) < 4:
                    await asyncio.sleep(0.02)
            assert [t for d, t in channel.ended if d == slow] == ["DealOpened", "LetterOfIntentSigned"]
        finally:
            stop.set()
            await notifier
            await nc.close()

    try:
        asyncio.run(run())
    finally:
        store.close()
