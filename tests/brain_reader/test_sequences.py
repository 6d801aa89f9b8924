"""Gap, late and duplicate detection from sequence numbers (no I/O)."""

from __future__ import annotations

from brain_reader.sequences import JsonSequence, SeqOutcome, SparkplugSequence


def test_json_sequence_holes_fill_late_and_repeats_are_duplicates() -> None:
    s = JsonSequence()
    outcomes = [s.observe(n).outcome for n in (10, 11, 14, 12, 12, 16, 13)]
    assert outcomes == [SeqOutcome.FIRST, SeqOutcome.IN_ORDER, SeqOutcome.GAP, SeqOutcome.LATE,
                        SeqOutcome.DUPLICATE, SeqOutcome.GAP, SeqOutcome.LATE]  # fmt: skip
    assert s.holes() == [(15, 16)] and s.missing == 1
    assert s.observe(11).outcome is SeqOutcome.DUPLICATE
    assert s.observe(2**63 - 1).skipped == 2**63 - 1 - 17  # 64-bit numbers, no blow-up
    assert s.missing <= JsonSequence.MAX_TRACKED + 1


def test_sparkplug_sequence_wraps_at_256_and_spots_gaps_and_repeats() -> None:
    s = SparkplugSequence()
    s.start_session(0)
    for n in range(1, 256):
        assert s.observe(n).outcome is SeqOutcome.IN_ORDER
    assert s.observe(0).outcome is SeqOutcome.IN_ORDER  # wrapped
    assert s.observe(0).outcome is SeqOutcome.DUPLICATE
    gap = s.observe(5)
    assert gap.outcome is SeqOutcome.GAP and gap.skipped == 4
