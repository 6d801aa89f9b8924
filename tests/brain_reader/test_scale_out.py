"""Three ``chenxing-ingest`` processes in one group on a real Mosquitto, one SIGKILLed
mid-stream: every published sample reaches VictoriaMetrics, samples are written twice only
where the dead reader had not confirmed them, and gaps and duplicates are counted once.

"Not confirmed" is what follows the last commit of the dead reader that reached the
broker: the takeover re-writes what that commit says was decoded but not written
(``rewritten``), and decodes afresh what came after it; the dead reader may have written
some of those too (it was killed after a write and before its commit went out), so they
can be written twice as well, never anything at or before the confirmed write."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from brain_reader.cluster import message_id, owner_of
from hil.broker import MqttBroker
from hil.victoria_metrics import VictoriaMetrics
from tests.brain_reader.helpers import BASE_MS, Publisher, json_data

pytestmark = [pytest.mark.broker, pytest.mark.slow]

CLI = [sys.executable, "-m", "brain_reader.cli"]
WORKERS = ("w1", "w2", "w3")
GATEWAYS = [f"gw-{i}" for i in range(6)]
SAMPLES = 2


class GroupWatcher:
    """Reads the group's control topics as the readers do: members and commits."""

    def __init__(self, broker: MqttBroker, group: str) -> None:
        self.members: set[str] = set()
        self.commits: dict[str, dict[str, object]] = {}
        #: per (worker, stream) the last commit of that worker the broker delivered
        self.last_of: dict[tuple[str, str], dict[str, object]] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="watcher")
        self.client.on_message = self._message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(f"chenxing-ingest/{group}/#", 1)
        self.client.loop_start()

    def _message(self, client: object, userdata: object, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/", 3)
        with self._lock:
            if parts[2] == "members":
                (self.members.add if msg.payload else self.members.discard)(parts[3])
            elif parts[2] == "commit" and msg.payload:
                commit = json.loads(msg.payload)
                self.commits[parts[3]] = commit
                self.last_of[(commit["worker"], parts[3])] = commit

    def counts(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {s: dict(c["state"]["counts"]) for s, c in self.commits.items()}  # type: ignore[index, call-overload]

    def confirmed(self, worker: str, stream: str) -> str | None:
        """The id of the last message ``worker`` said it had written of ``stream``."""
        with self._lock:
            commit = self.last_of.get((worker, stream), {})
        written = commit.get("written")
        return written if isinstance(written, str) else None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def until(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_a_reader_killed_mid_stream_loses_nothing_and_gaps_are_counted_once(
    tmp_path: Path, mosquitto: MqttBroker, victoria_metrics: VictoriaMetrics
) -> None:
    config = tmp_path / "ingest.yaml"
    config.write_text(
        f"brokers: [{mosquitto.url}]\ngroup: brain\nformats: [json]\nreconnect_min: 0.2\n"
        f"influxdb: {{url: '{victoria_metrics.url}', bucket: brain, flush_interval: 200ms}}\n"
    )
    watcher = GroupWatcher(mosquitto, "brain")
    procs = {}
    for worker in WORKERS:
        procs[worker] = await asyncio.create_subprocess_exec(
            *CLI, "-c", str(config), "--client-id", worker, "--state-dir", f"state-{worker}",
            "--json", cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
            stderr=(tmp_path / f"{worker}.log").open("wb"),
        )  # fmt: skip
    streams = {f"json/plant/l1/{g}" for g in GATEWAYS}
    owners = {s: owner_of(s, set(WORKERS)) for s in streams}
    victim = Counter(owners.values()).most_common(1)[0][0]
    pub = Publisher(mosquitto)
    sent: list[tuple[str, int]] = []  # (gateway, sample timestamp)
    seq_of: dict[str, int] = {}  # message id -> its sequence number
    try:
        assert await until(lambda: watcher.members == set(WORKERS), timeout=20), watcher.members
        for seq in range(120):
            for gateway in GATEWAYS:
                if gateway == "gw-0" and seq in (50, 51):  # 2 never sent: 2 gaps
                    continue
                topic, payload = json_data(seq, gateway, SAMPLES)
                seq_of[message_id(topic, payload)] = seq
                await asyncio.to_thread(pub.publish, topic, payload)
                if gateway == "gw-1" and seq == 70:  # sent twice: 1 duplicate
                    await asyncio.to_thread(pub.publish, topic, payload)
                sent += [(gateway, BASE_MS + seq * SAMPLES + i) for i in range(SAMPLES)]
            if seq == 60:  # mid-stream: the reader writing the most gateways dies
                procs[victim].send_signal(signal.SIGKILL)
            await asyncio.sleep(0.01)
        expected = {s: 120 - 2 * (s.endswith("gw-0")) + (s.endswith("gw-1")) for s in streams}
        assert await until(lambda: {s: c["messages"] for s, c in watcher.counts().items()}
                           == expected, timeout=30), watcher.counts()
    finally:
        pub.close()
        watcher.close()
        outputs = {}
        for worker, proc in procs.items():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
            outputs[worker] = out
    assert procs[victim].returncode == -signal.SIGKILL
    survivors = {w: json.loads(outputs[w]) for w in WORKERS if w != victim}
    assert all(procs[w].returncode == 0 for w in survivors)
    counts = watcher.counts()
    assert counts[next(s for s in streams if s.endswith("gw-0"))]["gaps"] == 2
    assert counts[next(s for s in streams if s.endswith("gw-1"))]["duplicates"] == 1
    assert sum(c["gaps"] for c in counts.values()) == 2
    assert sum(c["duplicates"] for c in counts.values()) == 1
    assert sum(c["late"] for c in counts.values()) == 0
    taken = sum(c["takeovers"] for c in survivors.values())
    assert taken == sum(1 for o in owners.values() if o == victim)

    def stored() -> Counter[tuple[str, int]]:
        rows = victoria_metrics.export('{__name__="press_value"}')
        return Counter((r["metric"]["gateway"], t) for r in rows for t in r["timestamps"])

    assert victoria_metrics.wait_for(lambda: set(stored()) == set(sent))
    store = stored()
    assert set(store) == set(sent), "samples lost (or unexpected ones)"
    resent = {("gw-1", BASE_MS + 70 * SAMPLES + i) for i in range(SAMPLES)}
    assert all(store[k] >= 2 for k in resent)  # the gateway sent it twice: written twice
    twice = {k: n for k, n in store.items() if n > 1 and k not in resent}
    # written twice only where the dead reader wrote but had not confirmed it: the
    # takeover's re-writes, of its own gateways
    assert all(n == 2 for n in twice.values()), twice
    assert all(owners[f"json/plant/l1/{g}"] == victim for g, _ in twice), twice
    # ... and never at or before the dead reader's last confirmed write of the stream
    for gateway, ts in twice:
        confirmed = watcher.confirmed(victim, f"json/plant/l1/{gateway}")
        assert confirmed is None or (ts - BASE_MS) // SAMPLES > seq_of[confirmed], (
            gateway, ts, seq_of.get(confirmed or ""))

