"""Several readers share the work: every reader hears every message, each stream (a JSON
gateway, a Sparkplug edge node; see :mod:`.streams`) has one writer.

Why not an MQTT 5 shared subscription: it hands each message to one reader, so (1) a
Sparkplug reader gets data whose aliases only a birth another reader saw defines, (2) no
reader sees a whole sequence, so gaps and duplicates cannot be told apart from "another
reader got it", and (3) a reader killed with SIGKILL takes the messages the broker had
handed it (in its socket, in its memory, not yet written) with it: QoS 0 data is gone,
and Mosquitto does not hand a dead subscriber's unacknowledged QoS 1 messages to the
others. Here:

- **Members.** Each reader publishes a retained ``{prefix}/members/{client id}`` and has
  the broker clear it when it dies (its will: an empty retained message). A reader
  counts itself in once its own member message comes back: its subscriptions are then
  in place. Readers leaving cleanly clear it themselves.
- **Owners.** The writer of a stream is the member with the highest hash of
  (member, stream) (rendezvous hashing): every reader computes the same owner from the
  same members, and a member leaving moves only its own streams.
- **Commits.** After each write the owner publishes, retained, per stream
  ``{prefix}/commit/{stream}``: the last message written (a hash of its bytes), the
  last one decoded with the sequence state and counts at that point. The other readers
  keep the stream's messages after the last commit (``takeover_buffer`` at most).
- **Takeover.** When the owner dies, the new owner re-writes what the dead one decoded
  but did not confirm (without counting it again), then decodes the rest with the
  handed-over sequence state: nothing the broker delivered is lost, and gap and
  duplicate counts carry on as if one reader had seen the stream. The messages written
  twice are identical points (InfluxDB and TDengine overwrite them; VictoriaMetrics
  needs ``-dedup.minScrapeInterval=1ms``).
- **Handover.** When a reader joins, the owner of a stream that moves to it writes what
  it holds, commits with ``released``, and the newcomer starts from there.

The cost: every reader receives every message (the broker sends each message once per
reader) and hashes it; only the owner decodes and writes it. One stream is written by
one reader, so a single gateway's rate is bounded by one reader.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway import json_input

log = logging.getLogger(__name__)

PREFIX = "chenxing-ingest"


def message_id(topic: str, payload: bytes) -> str:
    """What identifies one message between readers: a hash of its topic and bytes."""
    digest = hashlib.blake2b(payload, digest_size=8, key=topic.encode()[:64])
    return digest.hexdigest()


def owner_of(stream: str, members: set[str] | frozenset[str]) -> str | None:
    """Rendezvous hashing: the member whose hash with ``stream`` is highest."""
    best, best_score = None, -1
    for member in members:
        score = int.from_bytes(
            hashlib.blake2b(f"{member}\0{stream}".encode(), digest_size=8).digest(), "big")
        if score > best_score or (score == best_score and best is not None and member > best):
            best, best_score = member, score
    return best


@dataclass(slots=True)
class Commit:
    worker: str
    written: str | None
    decoded: str | None
    state: dict[str, Any]
    released: bool = False

    def payload(self) -> bytes:
        return json.dumps({"worker": self.worker, "written": self.written,
                           "decoded": self.decoded, "state": self.state,
                           "released": self.released, "ts": int(time.time() * 1000)},
                          separators=(",", ":")).encode()  # fmt: skip

    @classmethod
    def parse(cls, payload: bytes) -> Commit | None:
        try:
            body = json_input.loads(payload)
        except ValueError:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("worker"), str):
            return None
        written, decoded, state = body.get("written"), body.get("decoded"), body.get("state")
        return cls(body["worker"], written if isinstance(written, str) else None,
                   decoded if isinstance(decoded, str) else None,
                   state if isinstance(state, dict) else {}, body.get("released") is True)


@dataclass(slots=True)
class Held:
    """A message of a stream another reader writes."""

    id: str
    topic: str
    payload: bytes


@dataclass(slots=True)
class Takeover:
    """What a new owner does with a stream's held messages."""

    stream: str
    commit: Commit | None
    #: written by the previous owner, or not: rewrite (points only, not counted again)
    rewrite: list[Held] = field(default_factory=list)
    #: decoded by nobody yet: decode with the handed-over sequence state
    decode: list[Held] = field(default_factory=list)


class Cluster:
    def __init__(
        self,
        group: str,
        worker: str,
        publish: Callable[[str, bytes, bool], None],
        take_over: Callable[[Takeover], None],
        release: Callable[[str], None],
        max_held: int = 10_000,
    ) -> None:
        """``publish(topic, payload, retain)`` sends a control message (QoS 1);
        ``take_over(takeover)`` starts writing a stream; ``release(stream)`` asks the
        reader to write what it holds of a stream and commit it released."""
        self.prefix = f"{PREFIX}/{group}"
        self.worker = worker
        self.members: set[str] = set()
        self.joined = False
        self.active: set[str] = set()
        self.releasing: set[str] = set()
        self.held: dict[str, deque[Held]] = {}
        self.commits: dict[str, Commit] = {}
        self.held_dropped = 0
        self._publish = publish
        self._take_over = take_over
        self._release = release
        self._max_held = max_held

    # --- topics ------------------------------------------------------------------------
    def subscriptions(self) -> tuple[tuple[str, int], ...]:
        return ((f"{self.prefix}/members/+", 1), (f"{self.prefix}/commit/#", 1))

    @property
    def member_topic(self) -> str:
        return f"{self.prefix}/members/{self.worker}"

    def commit_topic(self, stream: str) -> str:
        return f"{self.prefix}/commit/{stream}"

    def is_control(self, topic: str) -> bool:
        return topic.startswith(self.prefix + "/")

    # --- membership --------------------------------------------------------------------
    def announce(self) -> None:
        """After each connect: this reader is a member (retained; the will clears it)."""
        body = {"worker": self.worker, "since": int(time.time() * 1000)}
        self._publish(self.member_topic, json.dumps(body).encode(), True)

    def leave(self) -> None:
        self._publish(self.member_topic, b"", True)

    def disconnected(self) -> None:
        """The connection dropped: messages were missed and the will told the others this
        reader left; it owns nothing until its member message comes back."""
        self.joined = False
        self.members.clear()
        self.active.clear()
        self.releasing.clear()
        self.held.clear()

    def on_control(self, topic: str, payload: bytes) -> None:
        rest = topic[len(self.prefix) + 1:]
        kind, _, name = rest.partition("/")
        if kind == "members" and name:
            self._member(name, bool(payload))
        elif kind == "commit" and name:
            commit = Commit.parse(payload) if payload else None
            if commit is not None:
                self._commit(name, commit)

    def _member(self, worker: str, present: bool) -> None:
        if worker == self.worker:
            if not present:  # a will of an earlier connection, delivered late: still here
                if self.joined:
                    self.announce()
                return
            first = not self.joined
            self.joined = True
            self.members.add(worker)
            if first:
                log.info("reader %s joined group %s (%d members)", self.worker,
                         self.prefix, len(self.members))  # fmt: skip
                self.rebalance()
            return
        if present == (worker in self.members):
            return
        if present:
            self.members.add(worker)
        else:
            self.members.discard(worker)
        log.info("reader %s %s group %s (%d members)", worker, "joined" if present else "left",
                 self.prefix, len(self.members))  # fmt: skip
        self.rebalance()

    def _commit(self, stream: str, commit: Commit) -> None:
        self.commits[stream] = commit
        if commit.worker == self.worker:
            return
        held = self.held.get(stream)
        if held is not None and commit.written is not None:
            # forget what was written: up to the first message with that id
            for i, message in enumerate(held):
                if message.id == commit.written:
                    for _ in range(i + 1):
                        held.popleft()
                    break
        if commit.released or commit.worker not in self.members:
            self._consider(stream)

    # --- ownership ---------------------------------------------------------------------
    def owner(self, stream: str) -> str | None:
        return owner_of(stream, self.members) if self.joined else None

    def rebalance(self) -> None:
        for stream in list(self.held) + list(self.active):
            self._consider(stream)

    def _consider(self, stream: str) -> None:
        owner = self.owner(stream)
        if owner != self.worker:
            if stream in self.active and stream not in self.releasing:
                self.releasing.add(stream)
                self.held.setdefault(stream, deque())
                self._release(stream)
            return
        if stream in self.active:
            return
        last = self.commits.get(stream)
        if (last is not None and last.worker != self.worker and not last.released
                and last.worker in self.members):
            return  # its owner until now is alive: wait for its released commit
        self._activate(stream, last)

    def _activate(self, stream: str, last: Commit | None) -> None:
        held = list(self.held.pop(stream, ()))
        self.active.add(stream)
        self.releasing.discard(stream)
        takeover = Takeover(stream, last)
        if last is None:
            takeover.decode = held
        else:
            ids = [m.id for m in held]
            written = _index(ids, last.written, 0)
            start = written + 1 if written is not None else 0
            decoded = _index(ids, last.decoded, start) if last.decoded != last.written else (
                written)  # fmt: skip
            if decoded is None:
                takeover.decode = held[start:]
            else:
                takeover.rewrite = held[start:decoded + 1]
                takeover.decode = held[decoded + 1:]
            if last.worker != self.worker or takeover.rewrite or held:
                log.info("taking over %s from %s%s: %d messages to rewrite, %d to decode",
                         stream, last.worker, " (released)" if last.released else "",
                         len(takeover.rewrite), len(takeover.decode))  # fmt: skip
        self._take_over(takeover)

    def released(self, stream: str) -> None:
        """The reader wrote what it held of ``stream`` and committed it released."""
        self.releasing.discard(stream)
        self.active.discard(stream)

    # --- messages ----------------------------------------------------------------------
    def route(self, stream: str, topic: str, payload: bytes) -> str | None:
        """The message's id when this reader writes ``stream`` now; None when it is held
        (another reader writes it, or this one is not in the group yet)."""
        mid = message_id(topic, payload)
        if stream in self.active and stream not in self.releasing:
            return mid
        held = self.held.get(stream)
        if held is None:
            held = self.held[stream] = deque()
            if self.joined:
                held.append(Held(mid, topic, payload))
                self._consider(stream)
                return None
        if len(held) >= self._max_held:
            held.popleft()
            self.held_dropped += 1
        held.append(Held(mid, topic, payload))
        return None


def _index(ids: list[str], wanted: str | None, start: int) -> int | None:
    if wanted is None:
        return None
    try:
        return ids.index(wanted, start)
    except ValueError:
        return None
