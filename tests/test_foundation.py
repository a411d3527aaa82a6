"""Package foundation: the histogram (C and Python twins), payloads, CLI basics."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsprof import cli
from wsprof.client.histogram import HIST_MAX_NS, PyHistogram, bucket_bounds, bucket_index
from wsprof.payloads import all_payloads, get_payload, payload_names


def fast_histogram():
    from wsprof._histogram import Histogram

    return Histogram


IMPLEMENTATIONS = {"python": lambda: PyHistogram, "fast": fast_histogram}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def Histogram(request):
    return IMPLEMENTATIONS[request.param]()


class TestHistogram:
    """One test class, run against the Cython histogram and its pure-Python twin."""

    def test_empty(self, Histogram):
        h = Histogram()
        assert h.total == 0
        assert h.percentile_ns(50) == 0.0

    def test_small_values_are_exact(self, Histogram):
        h = Histogram()
        for v in range(1, 101):
            h.record(v)
        assert h.percentile_ns(50) == 50.0
        assert h.percentile_ns(99) == 99.0
        assert h.percentile_ns(100) == 100.0

    @settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.integers(min_value=1_000, max_value=HIST_MAX_NS))
    def test_relative_error_below_one_percent(self, Histogram, value):
        h = Histogram()
        h.record(value)
        assert abs(h.percentile_ns(50) - value) <= 0.01 * value

    def test_percentiles_are_ordered_and_bounded(self, Histogram):
        rng = random.Random(7)
        h = Histogram()
        values = [int(rng.lognormvariate(12, 2)) for _ in range(20_000)]
        for v in values:
            h.record(v)
        qs = [h.percentile_ns(q) for q in (50, 90, 99, 99.9, 100)]
        assert qs == sorted(qs)
        assert qs[-1] == max(values)
        exact_p90 = sorted(values)[int(0.9 * len(values)) - 1]
        assert abs(qs[1] - exact_p90) <= 0.01 * exact_p90

    def test_clamps_above_sixty_seconds_but_keeps_max(self, Histogram):
        h = Histogram()
        h.record(10 * HIST_MAX_NS)
        assert h.max_ns == 10 * HIST_MAX_NS
        assert h.percentile_ns(50) <= HIST_MAX_NS * 1.01

    def test_negative_is_rejected(self, Histogram):
        with pytest.raises((ValueError, OverflowError)):
            Histogram().record(-1)

    def test_merge_across_implementations(self, Histogram):
        a, b = Histogram(), PyHistogram()
        for v in (1_000, 2_000, 3_000):
            a.record(v)
        for v in (4_000, 5_000):
            b.record(v)
        a.merge(b)
        assert a.total == 5
        assert a.max_ns == 5_000
        assert a.min_ns == 1_000
        merged = PyHistogram()
        merged.merge(a.to_dict())
        assert merged.to_dict() == a.to_dict()


def test_both_histograms_bucket_alike():
    fast = fast_histogram()
    for value in [0, 1, 255, 256, 257, 511, 512, 10**6, 123_456_789, HIST_MAX_NS]:
        assert fast.bucket_index(value) == bucket_index(value)
        lower, width = bucket_bounds(bucket_index(value))
        assert lower <= value < lower + width


def test_payload_sizes_match_their_descriptions():
    sizes = {name: p.json_size() for name, p in all_payloads().items()}
    assert 100 <= sizes["small"] <= 200
    assert 1_500 <= sizes["medium"] <= 2_500
    assert 55_000 <= sizes["large"] <= 70_000
    binary = get_payload("binary")
    assert binary.is_binary
    assert len(binary.raw_message()) == 4096
    assert set(payload_names()) >= {"small", "medium", "large", "binary"}


def test_unknown_payload_lists_valid_names():
    with pytest.raises(Exception, match="valid: small, medium, large, binary"):
        get_payload("huge")


def test_cli_without_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "wsprof micro" in capsys.readouterr().out


def test_python_dash_m_and_help():
    out = subprocess.run(
        [sys.executable, "-m", "wsprof", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    for command in cli.COMMANDS:
        assert command in out.stdout


@pytest.mark.parametrize(
    "url", ["ws://example.com/ws", "ws://10.1.2.3:80/ws", "ws://192.168.0.1/ws"]
)
def test_load_refuses_anything_but_loopback(url):
    from wsprof.client.base import LoadConfig
    from wsprof.errors import WsprofError

    with pytest.raises(WsprofError, match="not a loopback address"):
        LoadConfig(url=url)


@pytest.mark.parametrize(
    "url", ["ws://127.0.0.1:9/ws", "ws://localhost:9/ws", "ws://[::1]:9/ws", "ws://127.3.2.1:9/"]
)
def test_load_accepts_loopback(url):
    from wsprof.client.base import LoadConfig

    assert LoadConfig(url=url).port == 9


def test_a_missing_extension_is_one_clear_line():
    """Commands that need the Cython fast path say so, and how to get it."""
    code = (
        "import sys; sys.modules['wsprof._loadclient'] = None\n"
        "from wsprof.cli import main\n"
        "raise SystemExit(main(['load', 'ws://127.0.0.1:9/ws', '--duration', '1']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1
    assert "wsprof._loadclient is not built" in out.stderr
    assert "WSPROF_BUILD_EXT=required" in out.stderr
