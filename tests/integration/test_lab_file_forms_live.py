"""lab.yaml's forms from real clusters, built for real: a Service without selector whose hand-made
endpoint is a hostNetwork pod (answering on its node's address, from the node's namespace), and
one pod named by two Services (a selector's endpoint on one port, a hand-made one on another).
Each Service is probed from the outside client and from a pod; `down` leaves nothing behind."""

from __future__ import annotations

import re

import pytest

from lab_runner.backends.netns import NetnsBackend, namespaces_of_run
from lab_runner.evidence.probing import Target, probe
from lab_runner.lab import LiveLab
from lab_runner.runs import RunRecord, process_start_ticks

pytestmark = pytest.mark.needs_root

LAB = """\
id: forms
title: hand-made endpoints, a hostNetwork pod, a pod shared by two Services
clusterCIDR: 10.244.0.0/16
nodes:
  - name: node-a
    bridge: {name: cbr0, address: 10.244.0.1/24}
pods:
  - {name: web-1, ip: 10.244.0.2, labels: {app: web}, ports: [{name: http, containerPort: 80}]}
  - {name: caller, ip: 10.244.0.3, labels: {role: caller}}
  - name: node-agent
    namespace: kube-system
    hostNetwork: true
    ports: [{containerPort: 9100}]
services:
  - {name: web, clusterIP: 10.96.0.10, selector: {app: web}, ports: [{port: 80, targetPort: http}]}
  - name: web-admin
    clusterIP: 10.96.0.11
    ports: [{port: 8081}]
    endpoints: [{address: 10.244.0.2, port: 81}]
  - name: node-metrics
    namespace: kube-system
    clusterIP: 10.96.0.12
    ports: [{port: 9100}]
    endpoints: [{address: 192.168.49.2}]
clients:
  - {name: lb, ip: 192.168.49.100}
"""

ANSWERS = {  # Service address -> the pod whose app answers
    Target("10.96.0.10", 80, "tcp"): "web-1",
    Target("10.96.0.11", 8081, "tcp"): "web-1",  # port 81 only a hand-made endpoint names
    Target("10.96.0.12", 9100, "tcp"): "node-agent",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    path = tmp_path_factory.mktemp("forms") / "lab.yaml"
    path.write_text(LAB)
    with LiveLab.up(path) as live:
        yield live
        run = live.run
    # after down: no namespace of the run and no process it started (by pid and start time)
    assert namespaces_of_run(run.run_id) == []
    alive = [p for p in run.processes if process_start_ticks(p.pid) == p.start_ticks]
    assert alive == [], alive


@pytest.mark.parametrize("source", ["lb", "caller"])
@pytest.mark.parametrize("target", list(ANSWERS), ids=lambda t: f"{t.ip}:{t.port}")
def test_each_service_is_answered_by_its_endpoint(built, source, target):
    report = probe(built, source, target, "http", counters=False)
    assert report.answered, report.answer
    assert report.pod == ANSWERS[target]


def test_the_host_network_app_runs_in_the_nodes_namespace_on_the_node_address(built):
    assert "node-agent" not in built.run.pod_pids
    assert not any("node-agent" in ns for ns in built.run.namespaces)
    listening = built.exec("node", ["ss", "-Htln", "sport", "= :9100"]).stdout
    assert ":9100" in listening
    rules = built.save(table="nat")
    # (lines may start with their counters: the chain is the word after -A)
    sep = next(re.search(r"-A (\S+)", line)[1] for line in rules.splitlines()
               if "--to-destination 192.168.49.2:9100" in line)
    # the hairpin rule names the node's address, as kube-proxy writes it for such an endpoint
    assert re.search(rf"-A {sep} -s 192\.168\.49\.2/32 .*-j KUBE-MARK-MASQ", rules)


def test_a_run_that_lost_its_record_of_pids_still_loses_its_host_network_app(tmp_path):
    """Cleanup after a crash finds the hostNetwork app by the node namespace it runs in (the
    kit's name and run id), not by a recorded pid: a record with no pids and no namespaces."""
    path = tmp_path / "lab.yaml"
    path.write_text(LAB)
    with LiveLab.up(path) as live:
        [app] = [p for p in live.run.processes if p.role == "app:node-agent"]
        bare = RunRecord(run_id=live.run.run_id, lab_id="forms", lab_source=str(path))
        assert NetnsBackend().destroy(bare) == []
        assert process_start_ticks(app.pid) != app.start_ticks
        assert namespaces_of_run(live.run.run_id) == []
