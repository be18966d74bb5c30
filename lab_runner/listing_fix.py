"""`iptables` in a lab host: the real one, with protocol names restored in `-L -n` listings.

iptables 1.8.9 (Debian 12's) prints the prot column as a number under `-n` (`6` for tcp, `0` for
all), a regression that 1.8.10 reverted. Every kube-proxy listing students meet, the seed's
included, shows names; this wrapper rewrites only that column of `-L` output. Everything else,
counters and rules included, is the kernel's answer passed through unchanged.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

NAMES = {"0": "all", "1": "icmp", "6": "tcp", "17": "udp", "58": "ipv6-icmp", "132": "sctp"}
# A rule line of `-L -v`: pkts bytes target prot opt …; without -v: target prot opt ….
PROT = re.compile(r"^(?P<head>\s*(?:\d+\s+)?(?:\d+[KMGT]?\s+\d+[KMGT]?\s+)?(?:\S+\s+)??)(?P<num>\d+)(?P<gap>\s+)"
                  r"(?P<opt>--|-f|!f)\s")


def fix_line(line: str) -> str:
    m = PROT.match(line)
    if not m or m["num"] not in NAMES:
        return line
    name = NAMES[m["num"]]
    width = len(m["num"]) + len(m["gap"])
    return m["head"] + name.ljust(width - 1 if len(name) < width else len(name)) + " " + \
        line[m.end("gap"):]


def main(argv: list[str]) -> int:
    real, args = argv[0], argv[1:]
    listing = any(a in ("-L", "--list") or (a.startswith("-") and not a.startswith("--")
                                              and "L" in a[1:]) for a in args)
    if not listing:
        os.execv(real, [real, *args])
    done = subprocess.run([real, *args], capture_output=True, text=True)
    out = "".join(fix_line(line) for line in done.stdout.splitlines(keepends=True))
    sys.stdout.write(out)
    sys.stderr.write(done.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
