"""Scale-out of the brain-side reader: points/s written for 1, 2 and 3 ``chenxing-ingest``
processes of one group, each a separate process, on a real Mosquitto and VictoriaMetrics.

Run from the repository root with the virtualenv active::

    python -m bench.ingest_scale [--workers 1 2 3] [--gateways 12] [--messages 60]

A publisher (this process) sends ``gateways x messages`` JSON data messages of
``--samples`` samples each (QoS 1, as fast as Mosquitto takes them); the figure is the
points written divided by the time from the first publish to the moment every
gateway's commit says its last message was written (the readers commit after each
successful write). Also printed: each process's CPU seconds (``/proc``), the machine's
load average at the start. The readers run through bench/harness.py (``spawn``: killed
with the bench), on its ``BenchBroker`` (no per-client queue limit). Writes a JSON
result to ``bench/results/ingest_scale-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.harness import (
    BenchBroker,
    Child,
    Run,
    load_note,
    proc_times,
    self_cpu,
    sigterm_as_interrupt,
    spawn,
)
from hil.broker import MqttBroker
from hil.victoria_metrics import VictoriaMetrics


def cpu_seconds(pid: int | None) -> float:
    """CPU seconds of a process so far (0 when it is not running)."""
    return proc_times(pid).cpu if pid else 0.0


def message(gateway: str, seq: int, samples: int, base_ms: int) -> tuple[str, bytes]:
    ts = [base_ms + seq * samples + i for i in range(samples)]
    body = {"v": 1, "type": "data", "gateway": gateway, "site": "s", "line": "l",
            "session": 1, "seq": seq, "ts": ts[-1],
            "samples": {"tag": [f"dev.t{i}" for i in range(samples)],
                        "value": [seq + i / 1000 for i in range(samples)],
                        "ts": ts, "q": ["good"] * samples}}  # fmt: skip
    return f"chenxing/v1/s/l/{gateway}/data", json.dumps(body).encode()


class Commits:
    def __init__(self, broker: MqttBroker) -> None:
        self.members: set[str] = set()
        self.messages: dict[str, int] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-commits")
        self.client.on_message = self._message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe("chenxing-ingest/bench/#", 1)
        self.client.loop_start()

    def _message(self, client: object, userdata: object, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/", 3)
        with self.lock:
            if parts[2] == "members":
                (self.members.add if msg.payload else self.members.discard)(parts[3])
            elif parts[2] == "commit" and msg.payload:
                counts = json.loads(msg.payload)["state"].get("counts") or {}
                self.messages[parts[3]] = counts.get("messages", 0)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def run(workers: int, gateways: int, messages: int, samples: int) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    with BenchBroker() as broker, VictoriaMetrics() as vm:
        config = work / "ingest.yaml"
        config.write_text(
            f"brokers: [{broker.url}]\ngroup: bench\nformats: [json]\ncatalog: false\n"
            f"influxdb: {{url: '{vm.url}', bucket: b, flush_interval: 200ms, batch_size: 20000}}\n"
        )
        commits = Commits(broker)
        procs: list[Child] = [spawn(
            f"reader-{i}",
            [sys.executable, "-m", "brain_reader.cli", "-c", str(config), "--client-id",
             f"w{i}", "--log-level", "WARNING", "--json"], work / f"w{i}.log", stdout_pipe=True)
            for i in range(workers)]  # fmt: skip
        try:
            if not wait(lambda: len(commits.members) == workers, 30):
                raise RuntimeError(f"readers did not join: {commits.members}")
            pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher")
            pub.max_inflight_messages_set(1000)
            pub.connect(broker.host, broker.port)
            pub.loop_start()
            base = int(time.time() * 1000) - 3_600_000
            payloads = [message(f"gw-{g}", seq, samples, base)
                        for seq in range(messages) for g in range(gateways)]  # fmt: skip
            cpu0 = {p.pid: cpu_seconds(p.pid) for p in procs}
            broker_cpu0 = cpu_seconds(broker.pid)
            vm_pid = vm.pid
            vm_cpu0 = cpu_seconds(vm_pid)
            own0 = self_cpu()
            start = time.monotonic()
            infos = [pub.publish(topic, body, 1) for topic, body in payloads]
            for info in infos:
                info.wait_for_publish(60)
            expected = {f"json/s/l/gw-{g}": messages for g in range(gateways)}

            def done() -> bool:
                with commits.lock:
                    return commits.messages == expected

            if not wait(done, 300):
                raise RuntimeError(f"not all written: {commits.messages}")
            elapsed = time.monotonic() - start
            cpu = {p.pid: cpu_seconds(p.pid) - cpu0[p.pid] for p in procs}
            broker_cpu = cpu_seconds(broker.pid) - broker_cpu0
            vm_cpu = cpu_seconds(vm_pid) - vm_cpu0
            publisher_cpu = self_cpu() - own0
            pub.disconnect()
            pub.loop_stop()
        finally:
            commits.close()
            outs = []
            for p in procs:  # each writes its counters as JSON on its way out
                p.stop(timeout=60)
                outs.append(p.rest_of_output())
                p.close()
    points = gateways * messages * samples
    counters = [json.loads(o) for o in outs if o.strip()]
    return {"workers": workers, "points": points, "seconds": round(elapsed, 3),
            "points_per_s": round(points / elapsed), "reader_cpu_s": [round(c, 2) for c in
            cpu.values()], "broker_cpu_s": round(broker_cpu, 2), "store_cpu_s": round(vm_cpu, 2),
            "publisher_cpu_s": round(publisher_cpu, 2),
            "written": [c["written"] for c in counters]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--gateways", type=int, default=12)
    parser.add_argument("--messages", type=int, default=60, help="per gateway")
    parser.add_argument("--samples", type=int, default=500, help="per message")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    bench = Run("ingest_scale", packages=("aiohttp",))
    print(f"ingest_scale: {os.cpu_count()} CPUs, {load_note(bench.load_at_start)} at the start")
    results = []
    try:
        with sigterm_as_interrupt():
            for n in args.workers:
                result = run(n, args.gateways, args.messages, args.samples)
                results.append(result)
                print(f"{n} reader(s): {result['points_per_s']:>10,} points/s  "
                      f"({result['points']:,} points in {result['seconds']} s; reader CPU s "
                      f"{result['reader_cpu_s']}, broker {result['broker_cpu_s']}, "
                      f"VictoriaMetrics {result['store_cpu_s']}, publisher "
                      f"{result['publisher_cpu_s']})")  # fmt: skip
    except KeyboardInterrupt:
        return 130
    except RuntimeError as exc:
        print(f"ingest_scale benchmark failed: {exc}", file=sys.stderr)
        return 1
    document = {"parameters": {k: str(v) if isinstance(v, Path) else v
                               for k, v in vars(args).items()},
                "results": results}  # fmt: skip
    print(f"written {bench.write(document, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
