"""The runtime's histogram (plain counts, read at scrape time) and the promtool rules the
metrics test applies (tests/promlint.py): each rule catches what promtool would."""

from __future__ import annotations

import pytest

from gateway.histogram import POLL_BUCKETS, Histogram
from tests.promlint import problems


def test_a_value_lands_in_the_first_bucket_it_does_not_exceed() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 7.0):
        h.observe(v)
    h.observe(0.2, times=3)  # e.g. once per sample of a message
    assert h.counts == [2, 5, 1]
    assert h.cumulative() == [("0.1", 2), ("1.0", 7), ("+Inf", 8)]
    assert (h.count, h.total) == (8, pytest.approx(0.05 + 0.1 + 0.5 + 1.0 + 7.0 + 0.6))


def test_buckets_must_increase() -> None:
    with pytest.raises(ValueError, match="increasing"):
        Histogram((1.0, 0.5))
    assert len(Histogram(POLL_BUCKETS).counts) == len(POLL_BUCKETS) + 1


GOOD = """\
# HELP chenxing_polls_total Completed polls
# TYPE chenxing_polls_total counter
chenxing_polls_total{device="m"} 3.0
# HELP chenxing_build_info Build
# TYPE chenxing_build_info gauge
chenxing_build_info{version="1"} 1.0
# HELP chenxing_poll_duration_seconds Poll time
# TYPE chenxing_poll_duration_seconds histogram
chenxing_poll_duration_seconds_bucket{le="0.1"} 1.0
chenxing_poll_duration_seconds_bucket{le="+Inf"} 2.0
chenxing_poll_duration_seconds_count 2.0
chenxing_poll_duration_seconds_sum 0.3
"""


def test_a_clean_exposition_passes() -> None:
    assert problems(GOOD) == []


@pytest.mark.parametrize(("text", "said"), [
    ("# TYPE chenxing_x_total counter\nchenxing_x_total 1\n", "no help text"),
    ("# HELP chenxing_q_total q\n# TYPE chenxing_q_total gauge\nchenxing_q_total 1\n",
     'non-counter metrics should not have "_total" suffix'),
    ("# HELP chenxing_poll_milliseconds p\n# TYPE chenxing_poll_milliseconds gauge\n"
     "chenxing_poll_milliseconds 1\n", 'use base unit "seconds" instead of "milliseconds"'),
    ("# HELP chenxing_poll_ms p\n# TYPE chenxing_poll_ms gauge\nchenxing_poll_ms 1\n",
     "should not contain abbreviated units"),
    ("# HELP chenxing_pollTime p\n# TYPE chenxing_pollTime gauge\nchenxing_pollTime 1\n",
     "'snake_case'"),
    ("# HELP chenxing_up_gauge p\n# TYPE chenxing_up_gauge gauge\nchenxing_up_gauge 1\n",
     "should not include type 'gauge'"),
    ("# HELP chenxing_polls_count p\n# TYPE chenxing_polls_count gauge\n"
     "chenxing_polls_count 1\n", 'should not have "count" suffix'),
    ('# HELP chenxing_up u\n# TYPE chenxing_up gauge\nchenxing_up{le="1"} 1\n',
     'should not have "le" label'),
    ('# HELP chenxing_up u\n# TYPE chenxing_up gauge\nchenxing_up{deviceName="a"} 1\n',
     "label names should be written in 'snake_case'"),
])
def test_each_promtool_rule_catches_its_case(text: str, said: str) -> None:
    found = problems(text)
    assert any(said in p for p in found), found
