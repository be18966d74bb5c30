"""A snapshot of the host's own (root) network namespace, to prove the kit never changes it."""

from __future__ import annotations

import re
import shutil

import testinfra

# What the kit must never touch; each is read-only to collect.
COMMANDS = {
    "links": "ip -d -o link show",
    "addresses": "ip -o addr show",
    "routes": "ip route show table all",
    "ipv6 routes": "ip -6 route show table all",
    "rules": "ip rule show",
    "iptables (nft)": "iptables-nft-save",
    "iptables (legacy)": "iptables-legacy-save",
    "nftables": "nft list ruleset",
}
SYSCTLS = ("net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding",
           "net.bridge.bridge-nf-call-iptables", "net.ipv4.conf.all.rp_filter")


def _normalise(text: str) -> str:
    # Timestamps and volatile counters are not changes the kit made.
    text = re.sub(r"^# (Generated|Completed) .*$", "", text, flags=re.M)
    text = re.sub(r"\[\d+:\d+\]", "[-]", text)
    return text.strip()


def snapshot() -> dict[str, str]:
    host = testinfra.get_host("local://")
    snap = {}
    for what, command in COMMANDS.items():
        if shutil.which(command.split()[0]):
            snap[what] = _normalise(host.run(command).stdout)
    for name in SYSCTLS:
        try:
            snap[f"sysctl {name}"] = str(host.sysctl(name))
        except Exception:  # a sysctl this kernel lacks stays absent in both snapshots
            snap[f"sysctl {name}"] = "(absent)"
    return snap


def differences(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return [f"{key}:\n  before: {before.get(key)!r}\n  after:  {after.get(key)!r}"
            for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]
