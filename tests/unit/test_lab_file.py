"""The lab model: lab-3 reproduces the seed, endpoints follow selectors, every bad lab file is named."""

from __future__ import annotations

import ipaddress
import textwrap

import pytest
import yaml

from lab_runner import lab_file
from lab_runner.endpoints import all_endpoints, endpoints_for
from lab_runner.errors import LabFileError

SEED_PODS = {"my-app-7f569f66d9-6dkwl": "172.17.0.7", "my-app-7f569f66d9-dfrdh": "172.17.0.2",
             "my-app-7f569f66d9-qtc2q": "172.17.0.5", "my-app-7f569f66d9-ztt65": "172.17.0.6"}

BASE = textwrap.dedent("""\
    id: t
    title: test
    clusterCIDR: 10.244.0.0/16
    nodes:
      - name: n1
        bridge: {name: docker0, address: 172.17.0.1/16}
    pods:
      - name: web-1
        namespace: ns
        ip: 172.17.0.2
        labels: {app: web}
        ports: [{name: http, containerPort: 80}]
      - name: web-2
        namespace: ns
        ip: 172.17.0.3
        labels: {app: web}
        ports: [{name: http, containerPort: 8000}]
    services:
      - namespace: ns
        name: web
        selector: {app: web}
        clusterIP: 10.96.0.10
        ports: [{name: p, port: 80, targetPort: http}]
    clients:
      - name: lb
        ip: 192.168.49.1
    """)


def edit(change) -> str:
    data = yaml.safe_load(BASE)
    change(data)
    return yaml.safe_dump(data, sort_keys=False)


def problems_of(text: str) -> list[str]:
    with pytest.raises(LabFileError) as info:
        lab_file.parse(text, "lab.yaml")
    return info.value.problems


def test_lab3_is_the_seed():
    lab = lab_file.load("lab-3")
    assert {p.name: str(p.ip) for p in lab.pods} == SEED_PODS
    assert {p.namespace for p in lab.pods} == {"stateful-apps"}
    svc = lab.service("stateful-apps", "my-app")
    assert svc.cluster_ip == ipaddress.IPv4Address("10.104.5.205")
    assert svc.selector == {"app": "my-app", "type": "web-app"}
    port = svc.ports[0]
    assert (port.name, port.port, port.target, port.protocol) == ("http-svc", 8080, "app-http", "TCP")
    assert svc.port_name(port) == "stateful-apps/my-app:http-svc"
    node = lab.nodes[0]
    assert (node.name, node.bridge, str(node.bridge_address)) == ("minikube", "docker0", "172.17.0.1/16")
    assert str(lab.cluster_cidr) == "10.244.0.0/16"
    assert lab.clients and all(c.ip not in lab.cluster_cidr for c in lab.clients)


def test_lab3_endpoints_sorted_as_kube_proxy_sorts_them():
    lab = lab_file.load("lab-3-clusterip")
    [(svc, port)] = all_endpoints(lab)
    eps = endpoints_for(lab, svc, port)
    assert [e.address for e in eps] == ["172.17.0.2:80", "172.17.0.5:80", "172.17.0.6:80", "172.17.0.7:80"]


def test_a_checks_caller_is_a_client_or_a_pod_by_name_or_suffix():
    lab = lab_file.load("lab-3-clusterip")
    ip = ipaddress.IPv4Address
    assert lab.caller_address("client") == ip("192.168.49.1")
    assert lab.caller_address("my-app-7f569f66d9-6dkwl") == ip("172.17.0.7")
    assert lab.caller_address("qtc2q") == ip("172.17.0.5")
    assert lab.caller_address("2q") is None  # a suffix is a whole part of the name
    assert lab.caller_address("minikube") is None  # a node is not a caller here


def test_named_target_port_resolved_per_pod():
    lab = lab_file.parse(BASE)
    svc = lab.services[0]
    assert [e.address for e in endpoints_for(lab, svc, svc.ports[0])] == ["172.17.0.2:80",
                                                                          "172.17.0.3:8000"]


def test_endpoint_order_is_string_order_not_numeric():
    def more(d):
        d["pods"][1]["ip"] = "172.17.0.10"
        d["pods"][1]["ports"][0]["containerPort"] = 80
    lab = lab_file.parse(edit(more))
    svc = lab.services[0]
    # "172.17.0.10:80" < "172.17.0.2:80" as strings, which is what kube-proxy sorts by.
    assert [e.ip.exploded for e in endpoints_for(lab, svc, svc.ports[0])] == ["172.17.0.10", "172.17.0.2"]


def test_unready_pods_and_other_namespaces_are_not_endpoints():
    def change(d):
        d["pods"][0]["ready"] = False
        d["pods"][1]["namespace"] = "other"
    lab = lab_file.parse(edit(change))
    svc = lab.services[0]
    assert endpoints_for(lab, svc, svc.ports[0]) == []


def test_unknown_field_names_valid_fields_and_line():
    text = BASE.replace("    ip: 172.17.0.2\n", "    ip: 172.17.0.2\n    colour: red\n")
    [problem] = problems_of(text)
    assert "pods[0].colour" in problem and "unknown field 'colour'" in problem
    assert "valid fields are: name, namespace" in problem
    assert problem.startswith("line 11:")


def test_duplicate_ip():
    problems = problems_of(edit(lambda d: d["pods"][1].update(ip="172.17.0.2")))
    assert any("172.17.0.2 is used by both pod ns/web-1 and pod ns/web-2" in p for p in problems)


def test_pod_outside_bridge_subnet():
    problems = problems_of(edit(lambda d: d["pods"][0].update(ip="10.1.2.3")))
    assert any("pods[0].ip" in p and "outside node n1's pod subnet 172.17.0.0/16" in p for p in problems)


def test_pod_on_bridge_address():
    problems = problems_of(edit(lambda d: d["pods"][0].update(ip="172.17.0.1")))
    assert any("pods[0].ip" in p and "bridge address" in p for p in problems)


def test_target_port_name_no_pod_defines_lists_choices():
    problems = problems_of(edit(lambda d: d["services"][0]["ports"][0].update(targetPort="htp")))
    [problem] = problems
    assert "services[0].ports[0].targetPort" in problem
    assert "named 'htp'" in problem and "define: http/TCP" in problem


def test_cluster_ip_inside_pod_range():
    problems = problems_of(edit(lambda d: d["services"][0].update(clusterIP="10.244.1.1")))
    assert any("services[0].clusterIP" in p and "inside the pod range" in p for p in problems)
    problems = problems_of(edit(lambda d: d["services"][0].update(clusterIP="172.17.5.5")))
    assert any("inside node n1's pod subnet" in p for p in problems)


def test_cluster_ip_outside_service_cidr():
    problems = problems_of(edit(lambda d: d["services"][0].update(clusterIP="10.200.0.1")))
    assert any("outside serviceCIDR 10.96.0.0/12" in p for p in problems)


def test_overlapping_node_subnets():
    def two(d):
        d["nodes"].append({"name": "n2", "bridge": {"name": "cbr0", "address": "172.17.128.1/17"}})
        for p in d["pods"]:
            p["node"] = "n1"
    problems = problems_of(edit(two))
    assert any("nodes[1].bridge.address" in p and "overlaps node n1's 172.17.0.0/16" in p
               for p in problems)


def test_unknown_node_lists_nodes():
    problems = problems_of(edit(lambda d: d["pods"][0].update(node="minikube")))
    assert any("pods[0].node" in p and "the nodes are: n1" in p for p in problems)


def test_bad_protocol_and_port_and_choice_lists():
    def change(d):
        d["services"][0]["ports"][0]["protocol"] = "SCTP"
        d["pods"][0]["ports"][0]["containerPort"] = 70000
    problems = problems_of(edit(change))
    assert any("protocol" in p and "choose one of: TCP, UDP" in p for p in problems)
    assert any("containerPort" in p and "1 to 65535" in p for p in problems)


def test_client_inside_cluster_cidr():
    def change(d):
        d["clusterCIDR"] = "192.168.0.0/16"
    problems = problems_of(edit(change))
    assert any("clients[0].ip" in p and "inside clusterCIDR" in p for p in problems)


def test_missing_required_and_not_yaml():
    problems = problems_of("id: x\ntitle: y\nnodes: []\n")
    assert any("missing required field 'clusterCIDR'" in p for p in problems)
    [problem] = problems_of("id: [unclosed\n")
    assert "not valid YAML" in problem and problem.startswith("line ")


def test_several_unnamed_ports_rejected():
    def change(d):
        d["services"][0]["ports"] = [{"port": 80}, {"port": 81}]
    problems = problems_of(edit(change))
    assert any("must name each one" in p for p in problems)


def test_every_problem_reported_at_once():
    def change(d):
        d["pods"][0]["ip"] = "nonsense"
        d["services"][0]["clusterIP"] = "10.244.0.9"
    assert len(problems_of(edit(change))) >= 2


def test_unknown_lab_lists_labs():
    with pytest.raises(LabFileError) as info:
        lab_file.lab_path("lab-99")
    assert "lab-3-clusterip" in str(info.value)
