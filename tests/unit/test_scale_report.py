"""Lab 8's sweep: statistics, memory, the probe's packets, the table, JSON, plot and page."""

from __future__ import annotations

import json
import socket
import sys

import pytest

from lab_runner.scale import firstpacket, report
from lab_runner.scale.stats import Spread, percentile
from lab_runner.scale.sweep import Point, kernel_memory_kib


def test_percentile_interpolates_between_ranks():
    samples = [5, 1, 4, 2, 3]
    assert percentile(samples, 50) == 3
    assert percentile(samples, 0) == 1 and percentile(samples, 100) == 5
    assert percentile([1, 2], 10) == pytest.approx(1.1)
    assert percentile(range(1, 11), 90) == pytest.approx(9.1)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_spread_summarises_samples():
    spread = Spread.of([float(x) for x in range(1, 101)], lost=2)
    assert (spread.p10, spread.median, spread.p90) == (10.9, 50.5, 90.1)
    assert (spread.count, spread.lost) == (100, 2)


def test_kernel_memory_sums_slab_vmalloc_and_percpu():
    meminfo = "MemTotal: 100 kB\nSlab:  300 kB\nVmallocUsed: 20 kB\nPercpu: 5 kB\nCached: 7 kB\n"
    assert kernel_memory_kib(meminfo) == 325


def test_syn_segment_checksums_and_parses_back():
    segment = firstpacket.syn_segment("192.168.50.2", "172.16.0.10", 20001, 80, 12345)
    pseudo = socket.inet_aton("192.168.50.2") + socket.inet_aton("172.16.0.10") + \
        bytes([0, 6]) + len(segment).to_bytes(2, "big")
    assert firstpacket.checksum(pseudo + segment) == 0  # a correct checksum sums to zero
    ip = bytes([0x45]) + bytes(8) + bytes([6]) + bytes(10)
    frame = bytes(12) + b"\x08\x00" + ip + segment
    assert firstpacket.parse_frame(frame) == (20001, 80, firstpacket.SYN)
    assert firstpacket.parse_frame(bytes(12) + b"\x86\xdd" + ip + segment) is None


class FakeProber:
    """Answers every flow after `sport` microseconds' worth, except the ports listed as lost."""

    def __init__(self, lost=()):
        self.lost, self.seen = set(lost), []

    def flow(self, dst, dport, sport):
        self.seen.append((dst, sport))
        return None if sport in self.lost else float(sport % 100)


def test_run_alternates_targets_with_fresh_ports_and_counts_losses():
    prober = FakeProber(lost={20011})
    answer = firstpacket.run([("10.0.0.1", 80), ("10.0.0.2", 80)], 3, 20001, prober, warmup=5)
    assert [dst for dst, _ in prober.seen[:4]] == ["10.0.0.1", "10.0.0.2"] * 2
    assert len({port for _, port in prober.seen}) == len(prober.seen) == 16
    # warm-up used ports 20001-20010; the first counted flow (20011) was lost
    assert answer["10.0.0.1:80"] == [13.0, 15.0] and answer["10.0.0.2:80"] == [12.0, 14.0, 16.0]
    assert answer["lost"] == {"10.0.0.1:80": 1, "10.0.0.2:80": 0}


def _point(mode: str, services: int, last: float) -> Point:
    first = Spread(5.0, 6.0, 7.0, 200)
    return Point(mode, services, 10, 0.5, 0.4, 0.02, None if services > 100 else 1.5, 1234, 56.7,
                 first, Spread(last - 1, last, last + 1, 200, 1))


POINTS = [_point("iptables", 10, 6.3), _point("nftables", 10, 6.0),
          _point("iptables", 1000, 15.0), _point("nftables", 1000, 6.1)]


def test_table_has_a_row_per_point_and_the_ratio():
    text = report.table(POINTS)
    lines = text.splitlines()
    assert len(lines) == 5 and lines[0].split()[:2] == ["mode", "N"]
    assert "iptables   1,000" in lines[3] and lines[3].rstrip().endswith("x2.50")
    assert lines[3].split()[6] == "-"  # no full sync measured at that N


def test_json_carries_every_figure_and_the_machine():
    data = json.loads(report.as_json(POINTS, 200))
    assert data["flows_per_target"] == 200 and data["machine"]["cpus"] >= 1
    row = data["points"][2]
    assert row["last"]["median"] == 15.0 and row["last_over_first"] == 2.5 and row["full_s"] is None


def test_write_all_makes_the_plot_and_the_page(tmp_path):
    written = report.write_all(POINTS, 200, tmp_path / "out")
    assert sorted(p.name for p in written) == ["index.html", "scale.json", "scale.png", "scale.txt"]
    assert (tmp_path / "out" / "scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "out" / "index.html").read_text()
    assert "<img src='scale.png'" in page and page.count("<tr>") == 5


def test_iptables_legacy_is_written_with_its_own_tools_and_named_in_the_table():
    from lab_runner.commands import FakeRunner, Place
    from lab_runner.scale.sweep import Mode

    runner = FakeRunner()
    mode = Mode("iptables", runner, "legacy")
    mode.write(Place("kplab-abcdef-node"), "*nat\nCOMMIT\n")
    mode.sync(Place("kplab-abcdef-node"), "*nat\nCOMMIT\n", "*nat\nCOMMIT\n", partial=True)
    assert [call[1][0] for call in runner.calls] == ["iptables-legacy-restore"] * 2
    assert runner.calls[1][1][1:] == ("--noflush",)
    with pytest.raises(Exception, match="legacy"):
        Mode("iptables", runner, "xtables")
    legacy = Point("iptables", 10, 10, 0.5, 0.4, 0.02, 1.5, 1, 1.0, Spread(5, 6, 7, 20),
                   Spread(5, 6, 7, 20), "legacy")
    assert report.table([legacy]).splitlines()[1].startswith("iptables-legacy  ")


def test_without_matplotlib_everything_but_the_plot_is_written_and_the_page_says_why(
        tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    written = report.write_all(POINTS, 200, tmp_path / "out")
    assert sorted(p.name for p in written) == ["index.html", "scale.json", "scale.txt"]
    page = (tmp_path / "out" / "index.html").read_text()
    assert "<img" not in page and "matplotlib is not installed" in page
