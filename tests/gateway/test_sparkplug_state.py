"""bdSeq persistence and the outbox's release of messages a dead connection dropped."""

from __future__ import annotations

from pathlib import Path

from gateway.northbound.message import OutboundMessage
from gateway.northbound.outbox import MemoryOutbox, Outbox
from gateway.northbound.sparkplug.bdseq import BdSeqStore
from gateway.northbound.spool import DiskSpool, SpoolLimits


def test_bdseq_starts_at_zero_repeats_until_connected_and_survives_restarts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "bdseq.json"
    store = BdSeqStore(path)
    assert store.next_for_connect() == 0
    assert store.next_for_connect() == 0  # a failed attempt reuses it
    store.connected(0)
    assert store.next_for_connect() == 1
    store.connected(1)
    assert BdSeqStore(path).next_for_connect() == 2  # after a restart
    store.connected(255)
    assert BdSeqStore(path).next_for_connect() == 0  # wraps
    path.write_text("garbage")
    assert BdSeqStore(path).next_for_connect() == 0


def _messages(n: int) -> list[OutboundMessage]:
    return [OutboundMessage(f"t/{i}", b"x", "data", samples=1) for i in range(n)]


def _release_replays_in_order(outbox: Outbox) -> None:
    outbox.put_many(_messages(5))
    outbox.mark_backlog()
    taken = [outbox.take() for _ in range(3)]
    assert [m.topic for m in taken if m] == ["t/0", "t/1", "t/2"]
    outbox.ack(taken[0].id)  # type: ignore[union-attr]
    outbox.put_many(_messages(1))  # live, after the mark
    outbox.release([taken[1].id, taken[2].id, 999])  # type: ignore[union-attr]
    assert outbox.stats().inflight == 0
    outbox.mark_backlog()  # the reconnect
    order = []
    while (m := outbox.take()) is not None:
        order.append(m.topic)
        outbox.ack(m.id)
    assert order == ["t/1", "t/2", "t/3", "t/4", "t/0"]
    assert outbox.stats().messages == 0


def test_memory_outbox_release(tmp_path: Path) -> None:
    _release_replays_in_order(MemoryOutbox(100))


def test_disk_spool_release(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path / "spool.db", SpoolLimits(10**9, 3600))
    try:
        _release_replays_in_order(spool)
    finally:
        spool.close()
