"""Create the nfacct counters kube-proxy counts into, in the calling process's network namespace.

kube-proxy (v1.30+) writes `-m nfacct --nfacct-name NAME` only after creating NAME through
nfnetlink_acct, and iptables-restore refuses the whole document when a named counter is missing
("RULE_APPEND failed (No such file or directory)"). A node with `kubeProxy: {nfacct: true}`
needs them first: `ip netns exec NODE python -m lab_runner.nfacct` does what kube-proxy's
nfacct.Ensure does, with no `nfacct` binary.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys

from lab_runner.ruleset.render import INVALID_COUNTER, LOCALHOST_NODEPORT_COUNTER

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ACCT = 7
NFNL_MSG_ACCT_NEW = 0
NFACCT_NAME = 1
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE = 0x1, 0x4, 0x400
COUNTERS = (INVALID_COUNTER, LOCALHOST_NODEPORT_COUNTER)


def _request(name: str) -> bytes:
    """nlmsghdr + nfgenmsg + one NFACCT_NAME attribute, each padded to 4 bytes."""
    raw = name.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(raw), NFACCT_NAME) + raw
    attr += b"\0" * (-len(attr) % 4)
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0) + attr
    kind = (NFNL_SUBSYS_ACCT << 8) | NFNL_MSG_ACCT_NEW
    return struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK,
                       1, 0) + body


def ensure(names: tuple[str, ...] = COUNTERS) -> None:
    """Create each counter; one that exists already is fine (kube-proxy re-ensures every sync)."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
        sock.bind((0, 0))
        for name in names:
            sock.send(_request(name))
            code = -struct.unpack_from("=i", sock.recv(4096), 16)[0]  # the ack's nlmsgerr
            if code not in (0, errno.EEXIST):
                raise OSError(code, f"cannot create nfacct counter {name}: {errno.errorcode.get(code)}")


if __name__ == "__main__":
    ensure(tuple(sys.argv[1:]) or COUNTERS)
