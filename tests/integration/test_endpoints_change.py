"""Endpoints change on a live lab: scale out and in, readiness, re-created pods, no endpoints."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from lab_runner.evidence.probing import Target, probe
from lab_runner.evidence.sampling import sample, service_target
from lab_runner.lab import LiveLab

SERVICE = Target("10.104.5.205", 8080, "tcp")
# Holds one connection open: connect, read the pod's first answer line, then keep asking on the
# same connection when told to (a line on stdin), printing each answer.
HOLDER = r"""
import socket, sys
s = socket.create_connection(("10.104.5.205", 8080), timeout=5)
for line in sys.stdin:
    s.sendall(b"x\n")
    print(s.recv(4096).decode().strip(), flush=True)
"""


def svc_chain(lab) -> str:
    return lab.exec("node", ["iptables", "-t", "nat", "-S", "KUBE-SVC-Q7IJ732UBZY4AJKA"],
                    check=True).stdout


def test_open_connection_keeps_its_pod_across_a_scale_out():
    with LiveLab.up("lab-3") as lab:
        holder = subprocess.Popen(lab.place("client").prefix() + [sys.executable, "-c", HOLDER],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            holder.stdin.write("go\n")
            holder.stdin.flush()
            first = holder.stdout.readline()
            assert '"pod"' in first, first
            pod_before = first.split('"pod": "')[1].split('"')[0]
            added, _ = lab.scale("my-app", 8)
            assert len(added) == 4 and svc_chain(lab).count("-j KUBE-SEP-") == 8
            # New connections now spread over eight endpoints (1/8, 1/7, ... 1/2, then the rest)
            assert "--probability 0.12500000000" in svc_chain(lab)
            report = sample(lab, service_target(lab.model, "stateful-apps/my-app:http-svc"), 1600)
            assert report.passed and len(report.observed) == 8, report.observed
            holder.stdin.write("again\n")
            holder.stdin.flush()
            second = holder.stdout.readline()
            assert f'"pod": "{pod_before}"' in second, (first, second)
        finally:
            holder.kill()
            holder.wait()


def test_scale_in_not_ready_and_no_endpoints():
    with LiveLab.up("lab-3") as lab:
        _, removed = lab.scale("my-app", 2)
        assert len(removed) == 2 and svc_chain(lab).count("-j KUBE-SEP-") == 2
        nat = lab.save(table="nat")
        assert nat.count(":KUBE-SEP-") == 2, "stale endpoint chains must be deleted"
        remaining = [p.name for p in lab.model.pods]
        lab.set_ready(remaining[0], False)
        assert svc_chain(lab).count("-j KUBE-SEP-") == 1
        lab.set_ready(remaining[1], False)
        filter_rules = lab.exec("node", ["iptables", "-t", "filter", "-S", "KUBE-SERVICES"]).stdout
        assert "has no endpoints" in filter_rules and "-j REJECT" in filter_rules
        report = probe(lab, "client", SERVICE, "syn", capture=False)
        assert report.answer["answer"] == "icmp" and report.answer["icmp"] == {"type": 3, "code": 3}
        lab.set_ready(remaining[0], True)
        assert probe(lab, "client", SERVICE, "http", counters=False).pod == remaining[0]


def test_deleted_pod_comes_back_with_a_new_name_and_address():
    with LiveLab.up("lab-3") as lab:
        old, new = lab.recreate("dfrdh")
        assert old == "my-app-7f569f66d9-dfrdh" and new != old and new.startswith("my-app-7f569f66d9-")
        assert str(lab.model.pod(new).ip) != "172.17.0.2"
        assert lab.exec(new, ["hostname"], check=True).stdout.strip() == new
        again = LiveLab.attach(lab.run.run_id)
        assert new in [p.name for p in again.model.pods] and old not in again.hosts()
