"""Zero loss through broker outages and gateway SIGKILLs; the spool-full policy.

Real parts only: Mosquitto with persistence, a persistent-session subscriber,
the simulated energy meter, ``chenxing-gateway run`` as a subprocess (killed
with SIGKILL) and ``chenxing-gateway spool stats``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from hil.broker import MqttBroker
from hil.recorder import TelemetryRecorder
from tests.integration.gateway_harness import gateway_config, meter_device, running
from tests.waiting import until

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.serial]

OUTAGE_S = 2.0


def write_config(tmp: Path, broker: MqttBroker, meter_port: int) -> Path:
    body = {
        "gateway": {"id": "gw-spool", "site": "plant", "line": "l1", "state_dir": "state"},
        "devices": [meter_device("meter", meter_port)],
        "northbound": {
            "format": "json",
            "publish_interval": "50ms",
            "mqtt": {"port": broker.port, "reconnect_min": 0.2, "reconnect_max": 0.5},
            "spool": {"replay_rate": 200},
        },
        "http": {"enabled": False},
    }
    path = tmp / "gateway.yaml"
    path.write_text(json.dumps(body))
    return path


class GatewayProcess:
    """``chenxing-gateway run`` in a subprocess, its log in a file."""

    def __init__(self, config: Path, n: int) -> None:
        self.config = config
        self.log = config.parent / f"gateway-{n}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> GatewayProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli.main", "run", "-c", str(self.config),
            stdout=asyncio.subprocess.DEVNULL, stderr=self.log.open("wb"),
        )  # fmt: skip
        return self

    async def stop(self, sig: signal.Signals) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return await asyncio.wait_for(self.proc.wait(), 20)


async def spool_stats(config: Path) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli.main", "spool", "stats", "--json", "-c", str(config),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    return json.loads(out)


def next_seq(config: Path) -> int:
    """The first sequence number the next gateway run will use."""
    path = config.parent / "state" / "sequence.json"
    return json.loads(path.read_text())["next_seq"] if path.exists() else 0


async def outage(broker: MqttBroker, rec: TelemetryRecorder, up_s: float = 1.0) -> None:
    """Broker down for OUTAGE_S; back up until a new birth shows the gateway is back, and
    ``up_s`` more (a short ``up_s`` makes the next outage strike in the middle of the replay)."""
    births = len(rec.snapshot().births)
    await asyncio.to_thread(broker.stop)
    await asyncio.sleep(OUTAGE_S)  # the scenario: how long the broker is away; no assertion
    await asyncio.to_thread(broker.start)
    assert await rec.until(lambda s: len(s.births) > births, timeout=15)
    await asyncio.sleep(up_s)  # the scenario: how long until the next outage; no assertion


async def test_outages_and_sigkills_lose_no_sequence_number(tmp_path: Path, waveform_meter) -> None:
    with MqttBroker(kind="mosquitto", persistence=True) as broker:
        config = write_config(tmp_path, broker, waveform_meter.port)
        rec = TelemetryRecorder(broker.host, broker.port, client_id="brain-zl", persistent=True)
        rec.start()
        first_seq: list[int] = []  # per gateway run
        spool_tail: list[int | None] = []  # highest seq in the spool after each SIGKILL
        gw: GatewayProcess | None = None
        try:
            first_seq.append(next_seq(config))
            gw = await GatewayProcess(config, 1).start()
            assert await rec.until(lambda s: len(s.data_messages) >= 5, timeout=20)

            await outage(broker, rec)  # 1

            # 2: broker down, gateway SIGKILLed with a backlog in its spool, restarted
            await asyncio.to_thread(broker.stop)
            top = max(m["seq"] for m in rec.snapshot().data_messages)  # delivered before

            async def spooled() -> bool:  # sent after the broker went: held in the spool
                return ((await spool_stats(config))["seq_last"] or -1) >= top + 5

            await until(spooled, "5 messages held in the spool of the running gateway",
                        timeout=20, interval=0.1)
            assert await gw.stop(signal.SIGKILL) == -signal.SIGKILL
            held = await spool_stats(config)
            assert held["messages"] > 0 and held["held_by"] is None
            spool_tail.append(held["seq_last"])
            first_seq.append(next_seq(config))
            gw = await GatewayProcess(config, 2).start()
            await asyncio.sleep(OUTAGE_S / 2)  # the scenario: restarted while the broker is away
            births = len(rec.snapshot().births)
            await asyncio.to_thread(broker.start)
            assert await rec.until(lambda s: len(s.births) > births, timeout=15)

            await outage(broker, rec, up_s=0.1)  # 3
            await outage(broker, rec)  # 4

            # SIGKILL while connected and streaming: messages in flight may come twice
            streamed = len(rec.snapshot().data_messages)
            assert await rec.until(lambda s: len(s.data_messages) >= streamed + 5, timeout=15)
            assert await gw.stop(signal.SIGKILL) == -signal.SIGKILL
            spool_tail.append((await spool_stats(config))["seq_last"])
            first_seq.append(next_seq(config))
            gw = await GatewayProcess(config, 3).start()
            assert await rec.until(lambda s: len({b["session"] for b in s.births}) >= 3, 20)
            third = max(b["session"] for b in rec.snapshot().births)
            # run 3 streams before its outage and its SIGTERM (a slow start on a loaded box
            # would leave it without data, and the checks below without a third run)
            assert await rec.until(
                lambda s: sum(m["session"] == third for m in s.data_messages) >= 5, timeout=20
            )

            await outage(broker, rec)  # 5
            assert await gw.stop(signal.SIGTERM) == 0
            log = gw.log.read_text()
            assert "drained=True" in log, log[-3000:]
            assert await rec.until(
                lambda s: any(d["reason"] == "shutdown" for d in s.deaths), timeout=10
            )
            # the death follows the drained data; the checks below need no more than
            # what has arrived (no hole below the highest seq, the spooled tails)
        finally:
            if gw is not None and gw.proc is not None and gw.proc.returncode is None:
                gw.proc.kill()
                await gw.proc.wait()
            rec.stop()

    snap = rec.snapshot()
    by_session: dict[int, list[int]] = defaultdict(list)
    payloads: dict[tuple[int, int], str] = {}
    for m in snap.data_messages:
        key = (m["session"], m["seq"])
        by_session[m["session"]].append(m["seq"])
        text = json.dumps(m, sort_keys=True)
        assert payloads.setdefault(key, text) == text, "a duplicate differs from the original"
    sessions = sorted(by_session)
    assert len(sessions) == 3, sessions
    duplicates = 0
    for run, session in enumerate(sessions):
        seqs = by_session[session]
        duplicates += sum(n - 1 for n in Counter(seqs).values())
        unique = sorted(set(seqs))
        assert unique[0] == first_seq[run], f"run {run + 1}: the first messages are missing"
        missing = sorted(set(range(unique[0], unique[-1] + 1)) - set(unique))
        assert not missing, f"run {run + 1}: lost seq {missing[:20]}"
        if run < len(spool_tail) and spool_tail[run] is not None:
            assert unique[-1] >= spool_tail[run], f"run {run + 1}: the spooled tail is missing"
    total = sum(len(set(v)) for v in by_session.values())
    print(f"\nzero loss: {total} data messages in 3 runs, 5 outages, 2 SIGKILLs; "
          f"{duplicates} duplicates")  # fmt: skip
    # duplicates can only be messages in flight (or acknowledged in the last publish interval)
    # when the broker went away or the gateway was killed
    assert duplicates <= 7 * 64


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


async def test_full_spool_drops_the_oldest_and_reports_it_in_metrics_and_birth(
    tmp_path: Path, waveform_meter
) -> None:
    with MqttBroker(kind="mosquitto", persistence=True) as broker:
        config = gateway_config(
            tmp_path, broker.port, [meter_device("meter", waveform_meter.port)],
            spool={"max_bytes": "4KiB"},
        )  # fmt: skip
        rec = TelemetryRecorder(broker.host, broker.port, client_id="brain-full", persistent=True)
        rec.start()
        try:
            async with running(config) as gw:
                assert await rec.until(lambda s: len(s.data_messages) >= 5, timeout=10)
                port = gw.gateway.http_port
                assert port is not None
                await asyncio.to_thread(broker.stop)
                dropped = 'chenxing_spool_dropped_messages_total{reason="full"}'

                async def dropping() -> dict[str, float] | None:
                    metrics = await asyncio.to_thread(scrape, port)
                    return metrics if metrics[dropped] >= 5 else None

                metrics = await until(dropping, "5 messages dropped from the full spool",
                                      interval=0.1)
                assert metrics["chenxing_spool_bytes"] <= 4096
                assert metrics['chenxing_spool_dropped_samples_total{reason="full"}'] > 0
                births = len(rec.snapshot().births)
                await asyncio.to_thread(broker.start)
                assert await rec.until(lambda s: len(s.births) > births, timeout=15)
                nb = gw.gateway.northbound
                assert nb is not None
                assert await rec.until(lambda s: nb.outbox.stats().messages == 0, timeout=15)
                last = nb.contract.sequence.peek - 1  # type: ignore[attr-defined]
                assert await rec.until(
                    lambda s: any(m["seq"] == last for m in s.data_messages), timeout=10
                )
                final = await asyncio.to_thread(scrape, port)
        finally:
            rec.stop()
    snap = rec.snapshot()
    birth = snap.births[-1]
    reported = birth["spool"]["dropped"]["full"]
    assert reported["messages"] == final[dropped] >= metrics[dropped]
    assert birth["spool"]["dropped"]["age"] == {"messages": 0, "samples": 0}
    seqs = sorted({m["seq"] for m in snap.data_messages})
    missing = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))
    # the oldest were dropped: one contiguous hole right after what reached the broker
    assert missing == list(range(missing[0], missing[0] + len(missing)))
    assert len(missing) == reported["messages"]
    assert missing[0] - 1 in seqs
