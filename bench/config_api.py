"""The config API end to end: one tag edited in a 10,000-tag config, and one device's tag
edited while the other devices publish, each as a real HTTP request to the gateway's local
API (an admin's login), timed from sending the request to reading the answer.

The gateway runs in this process as in ``bench/config_apply.py`` (JSON contract, a real
Mosquitto, simulated Modbus TCP devices in processes of their own, ``modbus_bank_server``)
with its local API on a free loopback port; the client is aiohttp in the same event loop
(its share of the time is in the figure). The API makes the new text by splicing the one
tag's lines into the text running (``gateway/config/splice.py``), then applies it through
``ConfigApplier.apply``.

1. **10k**: 4 devices of 2,500 tags (1 s poll); each round ``PUT
   /api/config/devices/dev2/tags/t01234`` with a new scale. Target: <= 1 s.
2. **one-device**: 4 devices of 200 tags polled every 100 ms; each round ``PUT`` one tag
   of dev0 (dev0 restarts). Figures: seconds per call, and on the other devices the polls
   not published and the largest interval between two of their samples during the calls,
   in poll intervals. Target: <= 2 s, no gap.

    python -m bench.config_api [--rounds 5] [--only 10k,one-device]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.config_apply import (
    ProbeSubscriber,
    banks,
    device_body,
    dump,
    gateway_body,
    median_stages,
    start_gateway,
    summary,
    wait_for,
)
from bench.harness import BenchBroker, Run, load_note
from gateway.access import Role, UserStore, hash_password
from gateway.runtime.gateway import Gateway

log = logging.getLogger("bench.config_api")
SCENARIOS = ("10k", "one-device")
PASSWORD = "bench admin password"


def api_body(workdir: Path, broker_port: int, devices: list[dict[str, Any]]) -> dict[str, Any]:
    body = gateway_body(workdir, broker_port, devices, 10.0)
    body["http"] = {"port": 0}
    return body


async def login(session: aiohttp.ClientSession, base: str) -> str:
    async with session.post(f"{base}/api/login",
                            json={"user": "bench", "password": PASSWORD}) as resp:
        answer = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"login refused: {answer}")
        return str(answer["token"])


async def edit_tag(session: aiohttp.ClientSession, base: str, token: str, gateway: Gateway,
                   device: str, tag: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """PUT one tag; (seconds from the request to the answer read, the answer)."""
    url = f"{base}/api/config/devices/{device}/tags/{tag['name']}"
    started = time.perf_counter()
    async with session.put(url, json={"version": gateway.live.version, "tag": tag},
                           headers={"Authorization": f"Bearer {token}"}) as resp:
        answer = await resp.json()
    seconds = time.perf_counter() - started
    if answer.get("outcome") != "applied":
        raise RuntimeError(f"expected applied: {answer}")
    return seconds, answer


async def started(workdir: Path, body: dict[str, Any], name: str
                  ) -> tuple[Gateway, asyncio.Event, asyncio.Task[Any], str]:
    UserStore(workdir / "state" / "users.json").add("bench", Role.ADMIN,
                                                      hash_password(PASSWORD))
    path = workdir / f"{name}.yaml"
    path.write_text(dump(body))
    gateway, stop, task = await start_gateway(path)
    return gateway, stop, task, f"http://127.0.0.1:{gateway.http_port}"


async def ten_k(workdir: Path, broker: BenchBroker, rounds: int) -> dict[str, Any]:
    sizes = [2500] * 4
    with banks(workdir, sizes) as children:
        body = api_body(workdir, broker.port, [
            device_body(f"dev{i}", c.port, n, 1.0)
            for i, (c, n) in enumerate(zip(children, sizes, strict=True))])
        gateway, stop, task, base = await started(workdir, body, "10k")
        calls, answers = [], []
        try:
            await wait_for(lambda: all(r.delivering for r in gateway.runners.values()), 60,
                           "every device up")
            async with aiohttp.ClientSession() as session:
                token = await login(session, base)
                for round_no in range(rounds + 1):  # the first reads the line map: not kept
                    await asyncio.sleep(1.0)
                    tag = dict(body["devices"][2]["tags"][1234])
                    tag["scale"] = 1.0 + (round_no + 1) * 0.5
                    seconds, answer = await edit_tag(session, base, token, gateway, "dev2", tag)
                    log.info("10k round %d: %.3f s %s", round_no, seconds, answer["stages"])
                    if round_no:
                        calls.append(seconds)
                        answers.append(answer)
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)
    return {"tags": sum(sizes), "devices": len(sizes), "call_s": summary(calls),
            "apply_s": summary([a["seconds"] for a in answers]),
            "stages_median_s": median_stages([_Stages(a["stages"]) for a in answers]),
            "target_s": 1.0}


async def one_device(workdir: Path, broker: BenchBroker, rounds: int, devices: int,
                     tags: int, poll: float) -> dict[str, Any]:
    with banks(workdir, [tags] * devices) as children:
        body = api_body(workdir, broker.port, [
            device_body(f"dev{i}", c.port, tags, poll) for i, c in enumerate(children)])
        probes = {f"dev{i}.t00000" for i in range(1, devices)}
        sub = ProbeSubscriber(broker.port, probes)
        gateway, stop, task, base = await started(workdir, body, "one-device")
        calls: list[float] = []
        windows: list[tuple[int, int]] = []
        try:
            await wait_for(lambda: all(r.delivering for r in gateway.runners.values()), 30,
                           "every device up")
            steady = {n: r for n, r in gateway.runners.items() if n != "dev0"}
            async with aiohttp.ClientSession() as session:
                token = await login(session, base)
                for round_no in range(rounds):
                    await asyncio.sleep(2 * poll)
                    tag = dict(body["devices"][0]["tags"][1])
                    tag["scale"] = 1.0 + (round_no + 1) * 0.5
                    called = time.time_ns() // 1_000_000
                    seconds, answer = await edit_tag(session, base, token, gateway, "dev0", tag)
                    windows.append((called, time.time_ns() // 1_000_000))
                    calls.append(seconds)
                    log.info("round %d: %.3f s %s", round_no, seconds, answer["stages"])
            await asyncio.sleep(2 * poll)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await asyncio.sleep(0.5)  # the last messages reach the probe
            sub.close()
        stamps = sub.snapshot()
        lost, gaps = {}, {}
        for name, runner in steady.items():
            got = stamps[f"{name}.t00000"]
            lost[name] = runner.stats.polls - len(got)
            during = max((b - a for a, b in itertools.pairwise(got)
                          if any(a <= end and b >= start for start, end in windows)),
                         default=0)
            gaps[name] = round(during / 1000 / poll, 2)
    return {"devices": devices, "tags_per_device": tags, "poll_interval_s": poll,
            "call_s": summary(calls),
            "other_devices": {"polls_not_published": lost,
                              "largest_interval_during_calls_in_poll_intervals": gaps},
            "target_s": 2.0}


class _Stages:
    """An answer's stages where median_stages wants a result."""

    def __init__(self, stages: dict[str, float]) -> None:
        self.stages = stages


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        broker = BenchBroker().start()
        try:
            if "10k" in args.only:
                work = Path(tmp) / "10k"
                work.mkdir()
                out["ten_k"] = await ten_k(work, broker, args.rounds)
            if "one-device" in args.only:
                work = Path(tmp) / "one"
                work.mkdir()
                out["one_device"] = await one_device(work, broker, args.rounds, 4, 200, 0.1)
        finally:
            broker.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"scenarios, comma-separated: {', '.join(SCENARIOS)}")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run = Run("config_api", packages=("aiohttp", "pydantic", "pymodbus", "PyYAML"))
    print(f"config_api bench, {load_note(run.load_at_start)}", file=sys.stderr)
    body = asyncio.run(run_all(args))
    path = run.write({"rounds": args.rounds, **body})
    print(json.dumps(body, indent=1))
    print(f"result: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
