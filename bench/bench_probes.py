"""Benchmark: the probes in the mini lab (client → node DNAT → pod): burst flows/s, syn, http, imports."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Runnable from a checkout as `python bench/bench_probes.py`, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab_runner.commands import Place, Runner  # noqa: E402
from lab_runner.probes.launch import probe_env, run_agent  # noqa: E402
from lab_runner.probes.minilab import MiniLab, mini_lab  # noqa: E402

FLOWS = 10_000
BURSTS = 5
PROBES = 15
IMPORTS = 5
TARGET_FLOWS_PER_S = 20_000

IMPORT_SNIPPETS = {
    "python start-up + agent module (no scapy)":
        "import lab_runner.probes.agent",
    "scapy, trimmed (agent's _scapy_layers)":
        "from lab_runner.probes.agent import _scapy_layers as s; import time; t=time.perf_counter(); s(); "
        "print(time.perf_counter()-t)",
    "scapy.all, for comparison":
        "import time; t=time.perf_counter(); import scapy.all; print(time.perf_counter()-t)",
}


def import_seconds(code: str) -> float:
    """Wall time of a fresh interpreter running `code`, or the time it prints itself."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=probe_env(), capture_output=True, text=True,
                         check=True).stdout.strip()
    return float(out) if out else time.perf_counter() - started


def timed(call) -> tuple[float, dict]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def row(name: str, value: str, note: str = "") -> None:
    print(f"  {name:<44} {value:>16}  {note}")


def main() -> int:
    if os.geteuid() != 0:
        print("bench_probes: needs root (it builds network namespaces); run `sudo make bench`")
        return 3
    runner = Runner()
    print(f"probes ({os.cpu_count()} CPUs, python {sys.version.split()[0]})")
    for name, code in IMPORT_SNIPPETS.items():
        runs = [import_seconds(code) for _ in range(IMPORTS)]
        row(f"import: {name}", f"{statistics.median(runs) * 1000:.0f} ms", f"median of {IMPORTS}")
    with mini_lab(runner) as lab:
        client = Place(lab.client)

        def agent(subcommand: str, **options) -> dict:
            return run_agent(runner, client, subcommand, **options)

        for kind, port in (("syn", 80), ("http", 80)):
            walls, rtts = [], []
            for _ in range(PROBES):
                wall, result = timed(lambda: agent(kind, dst=MiniLab.VIP, dport=port))
                assert result["answer"] in ("syn-ack", "reply"), result
                walls.append(wall)
                rtts.append(result["rtt_ms"])
            row(f"{kind} probe: whole process (ip netns exec …)", f"{statistics.median(walls) * 1000:.0f} ms",
                f"median of {PROBES}")
            row(f"{kind} probe: on the wire (rtt_ms)", f"{statistics.median(rtts):.3f} ms")
        for proto, port, rule in (("tcp", 8000, "burst"), ("udp", 8053, "burst-udp")):
            rates, short = [], 0
            for i in range(BURSTS):
                before = lab.nat_counter(rule)
                result = agent("burst", dst=MiniLab.VIP, dport=port, flows=FLOWS, proto=proto,
                               sport_base=10_000 + i * FLOWS)
                short += FLOWS - (lab.nat_counter(rule) - before)
                rates.append(result["flows_per_s"])
            verdict = "ok" if statistics.median(rates) >= TARGET_FLOWS_PER_S else "BELOW TARGET"
            row(f"burst {proto} {FLOWS:,} flows", f"{statistics.median(rates):,.0f} flows/s",
                f"median of {BURSTS} (min {min(rates):,.0f}); target {TARGET_FLOWS_PER_S:,}: {verdict}; "
                f"DNAT counter short by {short}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
