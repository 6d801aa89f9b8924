"""The group's logic without a broker: owners, takeover after a commit, junk on the
control topics, the sequence state handed over."""

from __future__ import annotations

from typing import Any

from brain_reader.cluster import Cluster, Commit, Takeover, message_id, owner_of
from brain_reader.sequences import JsonSequence, SparkplugSequence


def test_rendezvous_owners_move_only_with_their_member() -> None:
    streams = [f"json/s/l/gw-{i}" for i in range(200)]
    three = {s: owner_of(s, {"a", "b", "c"}) for s in streams}
    two = {s: owner_of(s, {"a", "b"}) for s in streams}
    assert {s for s in streams if three[s] != two[s]} == {s for s in streams if three[s] == "c"}
    assert 40 < sum(o == "c" for o in three.values()) < 95  # about a third


class Group:
    def __init__(self, worker: str) -> None:
        self.sent: list[tuple[str, bytes, bool]] = []
        self.takeovers: list[Takeover] = []
        self.released: list[str] = []
        self.cluster = Cluster("g", worker, lambda t, p, r: self.sent.append((t, p, r)),
                               self.takeovers.append, self.released.append)  # fmt: skip

    def member(self, worker: str, present: bool = True) -> None:
        self.cluster.on_control(f"chenxing-ingest/g/members/{worker}", b"{}" if present else b"")


def test_a_dead_owners_uncommitted_tail_is_rewritten_and_the_rest_decoded() -> None:
    stream = next(f"json/s/l/gw-{i}" for i in range(100)
                  if owner_of(f"json/s/l/gw-{i}", {"a", "b"}) == "a")  # fmt: skip
    g = Group("b")
    g.member("a")
    g.member("b")  # its own member message came back: joined
    messages = [(f"chenxing/v1/s/l/{stream[-4:]}/data", f"m{i}".encode()) for i in range(6)]
    for topic, payload in messages:
        assert g.cluster.route(stream, topic, payload) is None  # a writes it: held
    ids = [message_id(t, p) for t, p in messages]
    commit = Commit("a", ids[1], ids[3], {"seq": {"highest": 3}})
    g.cluster.on_control(f"chenxing-ingest/g/commit/{stream}", commit.payload())
    assert [m.id for m in g.cluster.held[stream]] == ids[2:]  # written ones forgotten
    g.member("a", present=False)  # a died
    (takeover,) = g.takeovers
    assert [m.id for m in takeover.rewrite] == ids[2:4]  # decoded by a, not confirmed
    assert [m.id for m in takeover.decode] == ids[4:]
    assert takeover.commit is not None and takeover.commit.state == {"seq": {"highest": 3}}
    assert stream in g.cluster.active


def test_a_live_owner_is_waited_for_until_it_releases() -> None:
    g = Group("b")
    g.member("b")
    stream = next(f"spb/g/e{i}" for i in range(100) if owner_of(f"spb/g/e{i}", {"a", "b"}) == "b"
                  and owner_of(f"spb/g/e{i}", {"a"}) == "a")  # fmt: skip
    g.member("a")
    claim = Commit("a", None, None, {})  # a wrote it while b was not there
    g.cluster.on_control(f"chenxing-ingest/g/commit/{stream}", claim.payload())
    assert g.cluster.route(stream, "spBv1.0/g/NDATA/e", b"x") is None
    assert not g.takeovers  # a still writes it: wait for its release
    g.cluster.on_control(f"chenxing-ingest/g/commit/{stream}",
                         Commit("a", None, None, {}, released=True).payload())
    (takeover,) = g.takeovers
    assert [m.payload for m in takeover.decode] == [b"x"]


def test_junk_on_the_control_topics_changes_nothing() -> None:
    g = Group("b")
    g.member("b")
    for payload in (b"{not json", b"[1]", b'{"worker": 5}', b"[" * 10_000 + b"]" * 10_000):
        g.cluster.on_control("chenxing-ingest/g/commit/json/s/l/gw", payload)
    assert g.cluster.commits == {}
    assert Commit.parse(b'{"worker": "a", "state": [], "written": 3}') == Commit(
        "a", None, None, {})


def test_sequence_state_survives_its_json_round_trip_and_rejects_junk() -> None:
    s = JsonSequence()
    for n in (1, 2, 5, 9):
        s.observe(n)
    t = JsonSequence()
    t.restore(s.export())
    assert (t.highest, t.holes()) == (9, [(3, 5), (6, 9)])
    assert t.observe(4).outcome.value == "late"
    junk: Any
    for junk in (None, [], {"highest": "9"}, {"highest": True}):
        u = JsonSequence()
        u.restore(junk)
        assert u.highest is None
    sp = SparkplugSequence()
    sp.start_session(0)
    sp.observe(1)
    q = SparkplugSequence()
    q.restore(sp.export())
    assert q.observe(1).outcome.value == "duplicate" and q.observe(2).outcome.value == "in_order"
    q.restore({"last": 999, "recent": ["x", 3]})
    assert q.last is None
