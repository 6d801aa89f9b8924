"""Northbound ordering logic: births first, bounded in-flight, splitting, encode failures.

The MQTT link is replaced by a recorder of publish calls (a unit test of the
publisher's own logic); the real broker path is covered in tests/integration.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gateway.northbound.contract_json import JsonContract
from gateway.northbound.message import OutboundMessage
from gateway.northbound.outbox import MemoryOutbox
from gateway.northbound.publisher import Publisher
from gateway.northbound.sequence import SequenceStore
from gateway.tags import TagCatalog
from gateway.types import SampleBatch
from tests.gateway.helpers import make_config
from tests.waiting import until


class RecordingLink:
    def __init__(self, on_ack: Callable[[int], None], on_state: Callable[[], None]) -> None:
        self.on_ack = on_ack
        self.on_state = on_state
        self.connected = asyncio.Event()
        self.generation = 0
        self.sent: list[OutboundMessage] = []
        self.disconnects = 0
        self.url = "mqtt://test"

    def start(self) -> None:
        self.generation += 1
        self.connected.set()
        self.on_state()

    def publish(self, message: OutboundMessage) -> None:
        self.sent.append(message)

    async def stop(self) -> None:
        self.connected.clear()


class FailingContract(JsonContract):
    """Fails to encode any batch holding the value 13."""

    def data(self, batch: SampleBatch, seq: int, session: int, ts_ns: int) -> OutboundMessage:
        if 13.0 in batch.values:
            raise ValueError("cannot encode 13")
        return super().data(batch, seq, session, ts_ns)


def northbound(tmp: Path, **nb: object) -> tuple[Publisher, RecordingLink]:
    tags = [{"name": f"t{i}", "address": i, "type": "int16"} for i in range(10)]
    cfg = make_config(tags)
    cfg = cfg.model_copy(update={"northbound": cfg.northbound.model_copy(update=nb)})
    catalog = TagCatalog(cfg.devices)
    links: list[RecordingLink] = []

    def factory(config, client_id, will, password, on_ack, on_state, *rest):  # type: ignore[no-untyped-def]
        links.append(RecordingLink(on_ack, on_state))
        return links[0]

    contract = FailingContract(cfg, catalog, "t", SequenceStore(tmp / "seq.json"))
    n = Publisher(cfg.northbound, catalog, contract, MemoryOutbox(100), "test", None,
                  lambda: {"dev": "up"}, link_factory=factory)
    return n, links[0]


def batch(values: list[float]) -> SampleBatch:
    return SampleBatch.of(np.arange(len(values)), values, 1_000_000_000)


async def test_birth_first_then_data_within_the_inflight_bound(tmp_path: Path) -> None:
    outbox = {"max_messages": 100, "max_inflight": 3}
    nb, link = northbound(tmp_path, max_samples_per_message=2,
                          outbox=make_config([{"name": "x", "address": 0, "type": "int16"}])
                          .northbound.outbox.model_copy(update=outbox))
    nb.submit(batch([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]))
    nb.flush()  # 10 samples, 2 per message -> 5 messages
    task = asyncio.create_task(nb.run())
    # the sender fills the window in one pass, without awaiting: after the third, no more
    await until(lambda: len(link.sent) >= 3, "the window filled")
    kinds = [m.kind for m in link.sent]
    assert kinds[0] == "birth"
    assert kinds[1:] == ["data", "data"]  # birth + 2 data = the 3 allowed in flight
    for m in list(link.sent):
        link.on_ack(m.id)
    await until(lambda: len(link.sent) >= 6, "the other 3 data messages")
    data = [json.loads(m.payload) for m in link.sent if m.kind == "data"]
    assert [d["seq"] for d in data] == [0, 1, 2, 3, 4]
    assert [len(d["samples"]["tag"]) for d in data] == [2, 2, 2, 2, 2]
    assert nb.counters.messages_published == 3  # birth + 2 data acknowledged
    assert nb.counters.samples_published == 4
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_encode_failure_drops_that_message_only_and_keeps_sequence_contiguous(
    tmp_path: Path,
) -> None:
    nb, _ = northbound(tmp_path, max_samples_per_message=2)
    nb.submit(batch([1, 2, 13, 4, 5, 6]))  # the middle message cannot be encoded
    nb.flush()
    assert nb.counters.encode_failures == 1 and nb.counters.encode_dropped_samples == 2
    stats = nb.outbox.stats()
    assert stats.queued == 2
    seqs = []
    while (m := nb.outbox.take()) is not None:
        seqs.append(json.loads(m.payload)["seq"])
    assert seqs == [0, 1]  # no hole where nothing was sent


async def test_replay_interleaves_with_live_data_at_the_replay_rate(tmp_path: Path) -> None:
    """After a (re)connect the backlog goes out at spool.replay_rate, alternating with live data.

    The replay budget reads the test's clock, so the rate is checked by counting what was
    sent while a known time passed, however slow the machine: each step makes 1/16 s pass
    (exact in binary), submits one live message and waits until it is sent; the pass of the
    sender that sent it also sent every backlog message the budget allowed by then."""
    from gateway.northbound.publisher import ReplayBudget
    from gateway.northbound.spool import DiskSpool, SpoolLimits

    base = make_config([{"name": "x", "address": 0, "type": "int16"}]).northbound
    nb, link = northbound(
        tmp_path, max_samples_per_message=1,
        spool=base.spool.model_copy(update={"replay_rate": 40.0}),
    )  # fmt: skip
    now = [0.0]
    nb._replay = ReplayBudget(40.0, lambda: now[0])  # the clock of the test, not the machine's
    nb.outbox = DiskSpool(tmp_path / "spool.db", SpoolLimits(1 << 20, 3600.0))
    for _ in range(6):
        nb.submit(batch([float(i) for i in range(10)]))
    nb.flush()  # 60 messages waiting before the first connect: the backlog

    def seqs() -> list[int]:
        return [json.loads(m.payload)["seq"] for m in link.sent if m.kind == "data"]

    def sent_seq(seq: int) -> Callable[[], bool]:
        return lambda: seq in seqs()

    task = asyncio.create_task(nb.run())
    acked: set[int] = set()
    try:
        await until(lambda: link.sent, "the birth")  # connected: the 60 are the backlog now
        for step in range(20):  # one live message every 1/16 s of the test's clock
            now[0] = step / 16
            nb.submit(batch([1.0]))
            nb.flush()
            await until(sent_seq(60 + step), f"live message {60 + step} sent")
            backlog = [s for s in seqs() if s < 60]
            # a burst of 4 (rate/10), then 40/s: 2.5 messages per step, never more
            allowed = min(60, 4 + int(40 * now[0]))
            assert len(backlog) == allowed, (step, backlog)
            for m in link.sent:
                if m.id not in acked:
                    acked.add(m.id)
                    link.on_ack(m.id)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        nb.outbox.close()
    sent = seqs()
    backlog = [s for s in sent if s < 60]
    live = [s for s in sent if s >= 60]
    assert allowed == 51 < 60  # at 19/16 s: far from all of the backlog
    assert backlog == list(range(allowed)) and live == list(range(60, 80))  # each in order
    assert sent.index(60) < 5  # live went out with the first burst, not after the backlog


async def test_a_flush_lets_the_loop_run_and_a_flush_meanwhile_keeps_the_order(
    tmp_path: Path,
) -> None:
    """flush_async encodes a slice at a time; a flush (a device going down) between two
    slices encodes what is left first: the outbox takes every message in sequence order."""
    nb, _ = northbound(tmp_path, max_samples_per_message=1)
    nb.ENCODE_SLICE_S = 0.0  # one message a slice
    nb.submit(batch([1, 2, 3, 4, 5, 6]))
    flushing = asyncio.create_task(nb.flush_async())
    await asyncio.sleep(0)  # the first slice, then the loop's turn
    assert nb.outbox.stats().queued == 0 and len(nb._parts) == 5
    nb.submit(batch([7, 8]))
    nb.flush()  # what the first flush left, then these
    await flushing
    taken = []
    while (m := nb.outbox.take()) is not None:
        taken.append(json.loads(m.payload))
    assert [t["seq"] for t in taken] == list(range(8))
    assert [t["samples"]["value"][0] for t in taken] == [1, 2, 3, 4, 5, 6, 7, 8]
