"""`lab-runner import`: kubectl's objects (and a node's rules) rebuilt as a lab.yaml.

Round trips: a model is written out as the objects kubectl would print for it, its rules are
rendered; importing both and rendering the imported lab must give the same rules, for lab 3 (a
hand-written fixture) and for every golden model (objects written here). Real-node fixtures
(EKS v1.34, kubeadm v1.20) import with named warnings, and `rules --diff` names where the kit and
the node differ. Every bad input gets a message naming the file and the object.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from lab_runner import lab_file
from lab_runner.cli import cli, evidence_cmds, import_cmds  # noqa: F401  (registers commands)
from lab_runner.endpoints import endpoints_for, resolve_target_port, selects
from lab_runner.importer import Options, import_lab
from lab_runner.importer.objects import ImportProblem
from lab_runner.model import Lab
from lab_runner.ruleset.compare import compare
from lab_runner.ruleset.render import render

ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = ROOT / "fixtures" / "real-clusters"
NODES = ROOT / "fixtures" / "real-nodes"
# Every golden model and lab with a Service (labs 1 and 2 have pods only: nothing to import).
MODELS = [p for p in sorted((ROOT / "fixtures" / "golden").glob("**/*.yaml"))
          + [lab_file.lab_path(i) for i in lab_file.available_labs()]
          if lab_file.load(p).services]


def kubectl_objects(lab: Lab) -> dict:
    """What `kubectl get svc,endpointslices,pods,nodes -A -o yaml` prints for a lab's cluster:
    EndpointSlices as the controller makes them (every selected pod, with its conditions; one
    slice per set of resolved port numbers)."""
    items: list[dict] = []
    for service in lab.services:
        spec = {"type": service.type, "clusterIP": str(service.cluster_ip),
                "selector": dict(service.selector), "sessionAffinity": service.session_affinity,
                "externalTrafficPolicy": service.external_traffic_policy,
                "internalTrafficPolicy": service.internal_traffic_policy,
                "externalIPs": [str(a) for a in service.external_ips],
                "loadBalancerSourceRanges": [str(r) for r in service.source_ranges],
                "ports": [{"name": p.name or "", "port": p.port, "protocol": p.protocol,
                           "targetPort": p.target, **({"nodePort": p.node_port}
                                                      if p.node_port else {})}
                          for p in service.ports]}
        if service.session_affinity == "ClientIP":
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds":
                                                          service.affinity_timeout}}
        if service.health_check_node_port:
            spec["healthCheckNodePort"] = service.health_check_node_port
        ingress = [{"ip": str(a)} for a in service.load_balancer_ips]
        items.append({"kind": "Service", "metadata": {"name": service.name, "namespace":
                                                      service.namespace},
                      "spec": spec, "status": {"loadBalancer": {"ingress": ingress}}})
        slices: dict[tuple, list] = {}
        for pod in (p for p in lab.pods if selects(service, p)):
            numbers = tuple((port.name or "", port.protocol, resolve_target_port(port, pod))
                            for port in service.ports)
            endpoint = {"addresses": [str(pod.ip)],
                        "conditions": {"ready": pod.ready, "serving": pod.serving,
                                       "terminating": pod.terminating},
                        "targetRef": {"kind": "Pod", "name": pod.name,
                                      "namespace": pod.namespace}}
            if pod.slice_node:
                endpoint["nodeName"] = pod.slice_node
            slices.setdefault(numbers, []).append(endpoint)
        for index, (numbers, endpoints) in enumerate(slices.items()):
            items.append({"kind": "EndpointSlice", "addressType": "IPv4",
                          "metadata": {"name": f"{service.name}-{index}",
                                       "namespace": service.namespace,
                                       "labels": {"kubernetes.io/service-name": service.name}},
                          "endpoints": endpoints,
                          "ports": [{"name": n, "protocol": proto, "port": number}
                                    for n, proto, number in numbers if number]})
    for pod in lab.pods:
        ports = [{"containerPort": p.container_port, "protocol": p.protocol,
                  **({"name": p.name} if p.name else {})} for p in pod.ports]
        items.append({"kind": "Pod", "metadata": {"name": pod.name, "namespace": pod.namespace,
                                                  "labels": dict(pod.labels)},
                      "spec": {"nodeName": pod.slice_node or pod.node,
                               "containers": [{"name": "app", "ports": ports}]},
                      "status": {"podIP": str(pod.ip)}})
    for node in lab.nodes:
        items.append({"kind": "Node", "metadata": {"name": node.name},
                      "spec": {"podCIDR": str(node.pod_subnet)},
                      "status": {"addresses": [{"type": "InternalIP", "address": str(node.ip)}]}})
    return {"apiVersion": "v1", "kind": "List", "items": items}


def round_trip(lab: Lab, tmp_path: Path, fmt: str = "yaml") -> tuple[str, str, Lab]:
    """(the model's rules, the imported lab's rules, the imported lab)."""
    objects = tmp_path / f"cluster.{fmt}"
    data = kubectl_objects(lab)
    objects.write_text(json.dumps(data) if fmt == "json" else yaml.safe_dump(data))
    rules = tmp_path / "node.rules"
    rules.write_text(render(lab, lab.profile))
    _, _, imported = import_lab([str(objects)], Options(node=lab.nodes[0].name), str(rules))
    return rules.read_text(), render(imported, imported.profile), imported


def test_lab_3_fixture_round_trips_to_the_same_rules_and_pods(tmp_path):
    lab = lab_file.load("lab-3")
    rules = tmp_path / "node.rules"
    rules.write_text(render(lab, lab.profile))
    text, result, imported = import_lab([str(CLUSTERS / "lab-3-minikube.yaml")], Options(),
                                        str(rules))
    assert compare(render(imported, imported.profile), rules.read_text()).equal
    assert result.warnings == []
    assert imported.profile == "v1.23" and imported.cluster_cidr == lab.cluster_cidr
    assert {(p.name, p.ip, p.containers) for p in imported.pods} == \
        {(p.name, p.ip, p.containers) for p in lab.pods}
    [service] = imported.services
    assert service.selector == lab.services[0].selector
    assert service.ports == lab.services[0].ports
    assert "read from the rules" in text  # the header says where the cluster CIDR came from


@pytest.mark.parametrize("path", MODELS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_golden_model_and_lab_round_trips(path, tmp_path):
    lab = lab_file.load(path)
    expected, got, imported = round_trip(lab, tmp_path)
    result = compare(got, expected)
    assert result.equal, result.text
    assert imported.masquerade_all == lab.masquerade_all


def test_json_objects_import_like_yaml(tmp_path):
    lab = lab_file.load(ROOT / "fixtures" / "golden" / "kube-proxy" / "etp-local.yaml")
    expected, got, imported = round_trip(lab, tmp_path, "json")
    assert compare(got, expected).equal
    [service] = imported.services
    assert service.type == "LoadBalancer" and service.external_traffic_policy == "Local"
    assert [str(a) for a in service.load_balancer_ips] == ["1.2.3.4"]
    # The endpoint with no nodeName stays one of no node: not local, as in kube-proxy's test.
    assert {p.slice_node for p in imported.pods} == {"", "test-node"}


def test_endpoints_of_other_nodes_run_on_their_own_nodes(tmp_path):
    """kube-proxy's TestExternalTrafficPolicyLocal with svc1-a's slice naming node-b: each pod
    is imported onto its own node (the kit node first), and the render is the same."""
    lab = lab_file.load(ROOT / "fixtures" / "golden" / "kube-proxy" / "etp-local.yaml")
    lab = lab.with_changes(pods=tuple(replace(p, endpoint_node=None) for p in lab.pods))
    expected, got, imported = round_trip(lab, tmp_path)
    assert compare(got, expected).equal
    assert [(n.name, n.pod_subnet) for n in imported.nodes] == \
        [(n.name, n.pod_subnet) for n in lab.nodes]
    assert {(p.name, p.node, p.slice_node) for p in imported.pods} == \
        {("svc1-a", "node-b", "node-b"), ("svc1-b", "test-node", "test-node")}


def test_terminating_and_not_ready_endpoints_keep_their_conditions(tmp_path):
    lab = lab_file.load(ROOT / "fixtures" / "golden" / "kube-proxy" / "terminating-fallback.yaml")
    _, _, imported = round_trip(lab, tmp_path)
    conditions = {str(p.ip): (p.ready, p.serving, p.terminating) for p in imported.pods}
    assert conditions == {str(p.ip): (p.ready, p.serving, p.terminating) for p in lab.pods
                          if any(selects(s, p) for s in lab.services)}
    assert any(c[2] for c in conditions.values()) and any(not c[0] for c in conditions.values())


# -- real clusters ----------------------------------------------------------------------------
def test_eks_needs_a_cluster_cidr_and_says_why():
    with pytest.raises(ImportProblem, match="runs without --cluster-cidr"):
        import_lab([str(CLUSTERS / "eks-v1.34.yaml")], Options(),
                   str(NODES / "eks-v1.34.rules"))


def test_eks_imports_with_each_dropped_object_named(tmp_path):
    text, result, lab = import_lab([str(CLUSTERS / "eks-v1.34.yaml")],
                                   Options(cluster_cidr=ipaddress.IPv4Network("192.168.0.0/16")),
                                   str(NODES / "eks-v1.34.rules"))
    # Selector-less, but their endpoints are the control plane's, outside every node and pod.
    assert said(result, "Service default/kubernetes", "endpoint 192.168.2.135 is no pod's")
    assert said(result, "Service default/kubernetes", "none of its endpoints can be a pod")
    assert said(result, "Service kube-system/eks-extension-metrics-api",
                "none of its endpoints can be a pod")
    assert said(result, "Nodes", "3 nodes")
    for warning in result.warnings:
        assert f"#   - {warning}" in text  # each one a comment in the file
    # Each names the object and the file it came from.
    assert "Service default/kubernetes (" + str(CLUSTERS / "eks-v1.34.yaml") + "): endpoint " \
        in text
    assert lab.profile == "v1.34" and lab.nfacct
    assert {f"{s.namespace}/{s.name}" for s in lab.services} == {"kube-system/kube-dns",
                                                                 "game-2048/service-2048"}
    # Pods of the other two nodes run on the kit's node with their real node as nodeName.
    assert {p.slice_node for p in lab.pods} == {"ip-192-168-0-174.ec2.internal",
                                               "ip-192-168-5-20.ec2.internal",
                                               "ip-192-168-10-33.ec2.internal"}
    # The VPC CNI gives pods and nodes one subnet: the kit's node network is a spare one.
    assert not lab.node_network.overlaps(lab.nodes[0].pod_subnet)
    rendered = tmp_path / "lab.rules"
    rendered.write_text(render(lab, lab.profile))
    diff = compare(render(lab, lab.profile), (NODES / "eks-v1.34.rules").read_text())
    lines = diff.text.splitlines()
    # What differs: the Services left out, and the cluster-CIDR masquerade rules EKS lacks.
    assert any("KUBE-SVC-NPX46M4PTMTKRN6Y: unexpected chain" in line for line in lines)
    assert any("missing:" in line and "! -s 192.168.0.0/16" in line for line in lines)
    # Not different: service-2048's NodePort, KUBE-EXT and endpoint chains, and kube-dns's.
    assert not any("KUBE-EXT-V7WHPSTR7G6YHTBY" in line or "KUBE-SEP-OH65GRJIPEG4MHBH" in line
                   for line in lines), diff.text


def test_kubeadm_v120_imports_as_v123_with_the_nodeport_kept_as_clusterip():
    _, result, lab = import_lab([str(CLUSTERS / "kubeadm-v1.20.yaml")], Options(),
                                str(NODES / "kubeadm-v1.20-docker.rules"))
    assert said(result, "ignored", "ConfigMap kube-system/kube-proxy")
    assert said(result, "Service default/nginx-ext", "type, externalTrafficPolicy: the v1.23")
    assert lab.profile == "v1.23" and str(lab.cluster_cidr) == "10.244.0.0/16"
    assert {s.name for s in lab.services} == {"kubernetes", "kube-dns", "nginx-ext", "web-empty"}
    # kubernetes: no selector, its slice names the control plane node's address (kube-apiserver
    # on the host network): a hand-made endpoint at a hostNetwork pod of that node.
    kubernetes = lab.service("default", "kubernetes")
    [endpoint] = kubernetes.endpoints
    assert (str(endpoint.pod.ip), endpoint.ports, endpoint.pod.host_network,
            endpoint.pod.node, endpoint.pod.slice_node) == (
        "192.168.49.2", (("https", 6443),), True, "kubeadm-cp", "")
    # Each endpoint runs on its own node, in that node's podCIDR, at the nodes' own addresses.
    [nginx] = [p for p in lab.pods if p.name.startswith("nginx-ext")]
    assert nginx.slice_node == "kubeadm-worker" == nginx.node
    assert [(n.name, str(n.ip), str(n.bridge_address)) for n in lab.nodes] == [
        ("kubeadm-cp", "192.168.49.2", "10.244.0.1/24"),
        ("kubeadm-worker", "192.168.49.3", "10.244.1.1/24")]
    # With the v1.30 profile the NodePort and its Local policy are kept.
    _, result, lab = import_lab([str(CLUSTERS / "kubeadm-v1.20.yaml")], Options(profile="v1.30"),
                                str(NODES / "kubeadm-v1.20-docker.rules"))
    [nginx] = [s for s in lab.services if s.name == "nginx-ext"]
    assert nginx.type == "NodePort" and nginx.external_traffic_policy == "Local"
    assert nginx.ports[0].node_port == 32204


def said(result, subject: str, text: str) -> bool:
    """Whether a warning about `subject` says `text`."""
    return any(w.subject == subject and text in w.reason for w in result.warnings)


# -- what lab.yaml cannot express --------------------------------------------------------------
def objects(*items: dict) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": list(items)})


def service(name="web", ns="default", ip="10.96.0.20", ports=None, selector=None, **spec) -> dict:
    return {"kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "selector": {"app": name} if selector is None else selector,
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]
                     if ports is None else ports, **spec}}


def endpoint_slice(service_name="web", ns="default", addresses=("10.244.0.5",), node="n1",
                   address_type="IPv4", name=None, pods=None) -> dict:
    return {"kind": "EndpointSlice", "addressType": address_type,
            "metadata": {"name": name or f"{service_name}-abc", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [a], "nodeName": node, "conditions": {"ready": True},
                           "targetRef": {"kind": "Pod", "name": pods[i] if pods
                                         else f"{service_name}-{i}", "namespace": ns}}
                          for i, a in enumerate(addresses)]}


def node(name="n1", ip="192.168.49.2", cidr="10.244.0.0/24") -> dict:
    return {"kind": "Node", "metadata": {"name": name}, "spec": {"podCIDR": cidr},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


def run(tmp_path, text: str, **options):
    """Import `text`; the cluster CIDR is given unless a test says otherwise (None: find it)."""
    path = tmp_path / "objects.yaml"
    path.write_text(text)
    options.setdefault("cluster_cidr", ipaddress.IPv4Network("10.244.0.0/16"))
    return import_lab([str(path)], Options(**options))


def test_a_small_cluster_imports_without_warnings(tmp_path):
    _, result, lab = run(tmp_path, objects(service(), endpoint_slice(), node()))
    assert result.warnings == []
    assert [str(p.ip) for p in lab.pods] == ["10.244.0.5"]
    assert lab.services[0].ports[0].target == 8080


def test_a_cluster_cidr_guessed_from_pod_cidrs_is_a_warning(tmp_path):
    _, result, lab = run(tmp_path, objects(service(), endpoint_slice(), node(),
                                           node("n2", "192.168.49.3", "10.244.1.0/24")),
                         cluster_cidr=None, node="n1")
    assert str(lab.cluster_cidr) == "10.244.0.0/23"
    [warning] = [w for w in result.warnings if w.subject == "clusterCIDR"]
    assert "guessed" in warning.reason and "--cluster-cidr" in warning.reason


@pytest.mark.parametrize("extra, subject, reason", [
    ({**endpoint_slice("web", addresses=("172.31.0.9",), name="web-far"),
      "endpoints": [{"addresses": ["172.31.0.9"]}]}, "Service default/web",
     "endpoint 172.31.0.9 is no pod's"),
    (service("dns", ip="None"), "Service default/dns", "headless"),
    (service("v6", ip="fd00::10", clusterIPs=["fd00::10"]), "Service default/v6", "IPv6 only"),
    (service("bare", ip="10.96.0.31", ports=[]), "Service default/bare", "no ports"),
    (service("ext", ip="", type="ExternalName"), "Service default/ext", "ExternalName"),
    (endpoint_slice("gone"), "EndpointSlice default/gone-abc", "Service default/gone is not in"),
    (endpoint_slice("web", addresses=("fd00::5",), address_type="IPv6", name="web-v6"),
     "EndpointSlice default/web-v6", "addressType IPv6"),
    ({"kind": "ConfigMap", "metadata": {"name": "kube-proxy", "namespace": "kube-system"}},
     "ignored", "ConfigMap kube-system/kube-proxy"),
])
def test_what_lab_yaml_cannot_express_is_a_named_warning(tmp_path, extra, subject, reason):
    text, result, lab = run(tmp_path, objects(service(), endpoint_slice(), node(), extra))
    matching = [w for w in result.warnings if w.subject == subject and reason in w.reason]
    assert matching, [str(w) for w in result.warnings]
    assert f"#   - {matching[0]}" in text
    assert [s.name for s in lab.services] == ["web"]  # the rest is still built


def test_a_line_break_in_a_name_stays_inside_its_comment(tmp_path):
    sneaky = service("db", ip="None")
    sneaky["metadata"]["name"] = "db\nclusterCIDR: 0.0.0.0/0"
    text, result, lab = run(tmp_path, objects(service(), endpoint_slice(), node(), sneaky))
    assert said(result, "Service default/db\nclusterCIDR: 0.0.0.0/0", "headless")
    assert str(lab.cluster_cidr) == "10.244.0.0/16"
    assert [line for line in text.splitlines() if line.startswith("clusterCIDR")] == \
        ["clusterCIDR: 10.244.0.0/16"]


def test_ipv6_external_addresses_are_left_out_and_named(tmp_path):
    lb = service("web", type="LoadBalancer", externalIPs=["2001:db8::1", "203.0.113.9"],
                 loadBalancerSourceRanges=["2001:db8::/64"])
    lb["status"] = {"loadBalancer": {"ingress": [{"ip": "2001:db8::2"}, {"ip": "198.51.100.7"}]}}
    _, result, lab = run(tmp_path, objects(lb, endpoint_slice(), node()), profile="v1.30")
    [service_] = lab.services
    assert [str(a) for a in service_.external_ips] == ["203.0.113.9"]
    assert [str(a) for a in service_.load_balancer_ips] == ["198.51.100.7"]
    assert service_.source_ranges == ()
    for field in ("externalIPs 2001:db8::1", "load balancer IPs 2001:db8::2",
                  "loadBalancerSourceRanges 2001:db8::/64"):
        assert said(result, "Service default/web", f"{field} left out"), result.warnings


def test_a_host_network_endpoint_is_a_host_network_pod_of_its_node(tmp_path):
    text, result, lab = run(tmp_path, objects(
        service(), endpoint_slice(addresses=("10.244.0.5", "192.168.49.2")), node()))
    assert result.warnings == []
    agent = lab.pod("web-1")
    assert (agent.host_network, agent.ip, agent.node) == (True, lab.nodes[0].ip, "n1")
    # selected as the real pod was, listening on the slice's port in the node's namespace
    assert [e.address for e in endpoints_for(lab, lab.services[0], lab.services[0].ports[0])] \
        == ["10.244.0.5:8080", "192.168.49.2:8080"]
    assert [p.container_port for p in agent.ports] == [8080]
    written = {p["name"]: p for p in yaml.safe_load(text)["pods"]}
    assert "ip" not in written["web-1"]  # a hostNetwork pod takes its node's address


def test_a_host_network_pod_of_a_node_the_lab_does_not_build_is_left_out(tmp_path):
    _, result, lab = run(tmp_path, objects(
        service(), endpoint_slice(addresses=("10.244.0.5", "192.168.49.3")), node(),
        node("n2", "192.168.49.3", "10.244.1.0/24")), node="n1")
    assert said(result, "Pod default/web-1", "hostNetwork on node n2, which the lab does not")
    assert [p.name for p in lab.pods] == ["web-0"]


def test_a_selector_less_service_keeps_its_hand_made_endpoints(tmp_path):
    """Two Services naming one pod's address with different ports; one of them selector-less
    with a hand-made slice (a terminating endpoint of another node too)."""
    web = endpoint_slice(addresses=("10.244.0.5", "10.244.0.6"))
    manual = service("metrics", ip="10.96.0.30", selector={},
                     ports=[{"name": "m", "port": 9100, "targetPort": 9100}])
    sliced = endpoint_slice("metrics", addresses=("10.244.0.5", "10.244.0.6"), pods=["web-0",
                                                                                    "web-1"])
    sliced["ports"] = [{"name": "m", "port": 9102, "protocol": "TCP"}]
    sliced["endpoints"][1].update(nodeName="n2", conditions={"ready": False, "serving": True,
                                                             "terminating": True})
    text, result, lab = run(tmp_path, objects(service(), web, manual, sliced, node()))
    assert result.warnings == []
    metrics = lab.service("default", "metrics")
    assert metrics.selector == {}
    assert [(e.pod.name, e.ports, e.pod.ready, e.pod.serving, e.pod.terminating,
             e.pod.slice_node) for e in metrics.endpoints] == [
        ("web-0", (("m", 9102),), True, True, False, "n1"),
        ("web-1", (("m", 9102),), False, True, True, "n2")]
    assert [e.address for e in endpoints_for(lab, metrics, metrics.ports[0])] == ["10.244.0.5:9102"]
    # the same pods stay the selector's endpoints of web, on its own port
    assert [e.address for e in endpoints_for(lab, lab.service("default", "web"),
                                             lab.service("default", "web").ports[0])] == [
        "10.244.0.5:8080", "10.244.0.6:8080"]
    assert len(lab.pods) == 2


def test_a_service_whose_only_endpoints_cannot_be_pods_is_dropped(tmp_path):
    far = endpoint_slice(addresses=("172.31.0.9",))
    del far["endpoints"][0]["targetRef"]
    with pytest.raises(ImportProblem, match="nothing to build") as caught:
        run(tmp_path, objects(service(), far, node()))
    assert "Service default/web (" in str(caught.value)
    assert "none of its endpoints can be a pod" in str(caught.value)


def test_one_pod_behind_two_services_is_one_lab_pod(tmp_path):
    pod = {"kind": "Pod", "metadata": {"name": "web-0", "namespace": "default",
                                       "labels": {"app": "web", "tier": "front"}},
           "spec": {"containers": [{"name": "c"}]}, "status": {"podIP": "10.244.0.5"}}
    other = service("front", ip="10.96.0.21", selector={"tier": "front"})
    _, result, lab = run(tmp_path, objects(service(), other, endpoint_slice(),
                                           endpoint_slice("front", pods=["web-0"]), pod, node()))
    assert len(lab.pods) == 1 and result.warnings == []
    assert all(selects(s, lab.pods[0]) for s in lab.services)


def test_one_address_two_pods_becomes_one_pod_both_services_select(tmp_path):
    """kube-proxy's own tests give two Services one address with different pod names."""
    other = service("front", ip="10.96.0.21", selector={"tier": "front"})
    _, result, lab = run(tmp_path, objects(service(), other, endpoint_slice(),
                                           endpoint_slice("front"), node()))
    [pod] = lab.pods
    assert pod.labels == {"app": "web", "tier": "front"}
    assert all(selects(s, pod) for s in lab.services)
    assert said(result, "Service default/front", "one lab pod serves both")


def test_labels_two_services_need_differently_are_a_warning(tmp_path):
    other = service("front", ip="10.96.0.21", selector={"app": "front"})
    _, result, lab = run(tmp_path, objects(service(), other, endpoint_slice(),
                                           endpoint_slice("front", pods=["web-0"]), node()))
    assert said(result, "Service default/front", "would need label app=front beside app=web")
    assert [s.name for s in lab.services if any(selects(s, p) for p in lab.pods)] == ["web"]


def test_a_slice_that_lists_fewer_pods_than_the_selector_picks_is_named(tmp_path):
    pods = [{"kind": "Pod", "metadata": {"name": f"web-{i}", "namespace": "default",
                                         "labels": {"app": "web"}},
             "status": {"podIP": f"10.244.0.{5 + i}"}} for i in range(2)]
    wide = service("all", ip="10.96.0.22", selector={"app": "web"})
    _, result, _ = run(tmp_path, objects(
        service(), wide, endpoint_slice(addresses=("10.244.0.5", "10.244.0.6")),
        endpoint_slice("all", addresses=("10.244.0.5",), pods=["web-0"]), *pods, node()))
    assert said(result, "Service default/all", "also picks pod(s) default/web-1")


def test_a_pod_name_longer_than_a_hostname_is_cut_and_named(tmp_path):
    name = "w" * 70
    _, result, lab = run(tmp_path, objects(service(), endpoint_slice(pods=[name]), node()))
    assert lab.pods[0].name == "w" * 63
    assert said(result, "Service default/web", "at most 63 characters")


def test_a_named_port_of_another_protocol_is_not_reused(tmp_path):
    pod = {"kind": "Pod", "metadata": {"name": "web-0", "namespace": "default",
                                       "labels": {"app": "web"}},
           "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8080,
                                               "protocol": "UDP"}]}]},
           "status": {"podIP": "10.244.0.5"}}
    named = service(ports=[{"name": "http", "port": 80, "targetPort": "http"}])
    with pytest.raises(ImportProblem, match="nothing to build") as caught:
        run(tmp_path, objects(named, endpoint_slice(), pod, node()))
    assert "names a UDP port 'http', the Service a TCP one" in str(caught.value)
    assert "no pod of the lab defines a TCP port named 'http'" in str(caught.value)


def test_a_cluster_cidr_holding_cluster_ips_is_refused(tmp_path):
    with pytest.raises(ImportProblem, match="cluster CIDR 10.0.0.0/8 holds the cluster IP"):
        run(tmp_path, objects(service(ip="10.96.0.20"), endpoint_slice(), node()),
            cluster_cidr=ipaddress.IPv4Network("10.0.0.0/8"))


def test_pods_beyond_the_limit_leave_their_service_out(tmp_path):
    many = service("many", ip="10.96.0.40")
    _, result, lab = run(tmp_path, objects(
        service(), endpoint_slice(), many,
        endpoint_slice("many", addresses=[f"10.244.0.{i}" for i in range(10, 20)]), node()),
        max_pods=5)
    assert [s.name for s in lab.services] == ["web"]
    assert any(w.subject == "Service default/many" and "--max-pods" in w.reason
               for w in result.warnings)


def test_several_nodes_without_node_pick_the_first_and_say_so(tmp_path):
    _, result, lab = run(tmp_path, objects(service(), endpoint_slice(node="n2"), node(),
                                           node("n2", "192.168.49.3", "10.244.1.0/24")))
    assert lab.nodes[0].name == "n1" and lab.pods[0].slice_node == "n2"
    assert any(w.subject == "Nodes" and "--node" in w.reason for w in result.warnings)
    with pytest.raises(ImportProblem, match="--node n9: no such Node.*n1, n2"):
        run(tmp_path, objects(service(), endpoint_slice(), node(),
                              node("n2", "192.168.49.3", "10.244.1.0/24")), node="n9")


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("{not json", "not valid JSON"),
    ("a: [b\n", "neither YAML nor JSON"),
    ("- 1\n- 2\n", "not a Kubernetes object or List"),
    ("kind: List\nitems: 3\n", "without an `items` list"),
    ("kind: List\nitems: [3]\n", "items[0] is not an object"),
])
def test_bad_input_names_the_file(tmp_path, text, message):
    with pytest.raises(ImportProblem, match=re.escape(message)) as caught:
        run(tmp_path, text)
    assert str(tmp_path / "objects.yaml") in str(caught.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ImportProblem, match=re.escape(f"{tmp_path / 'nope.yaml'}: cannot read it")):
        import_lab([str(tmp_path / "nope.yaml")], Options())


def test_no_cluster_cidr_anywhere_is_an_error_naming_the_options(tmp_path):
    bare = {**node(), "spec": {}}
    with pytest.raises(ImportProblem, match="no cluster CIDR: give --cluster-cidr"):
        run(tmp_path, objects(service(), endpoint_slice(), bare), cluster_cidr=None)


def test_only_other_kinds_is_an_error_listing_them(tmp_path):
    with pytest.raises(ImportProblem, match="(?s)nothing to build.*ConfigMap default/x"):
        run(tmp_path, objects({"kind": "ConfigMap", "metadata": {"name": "x",
                                                               "namespace": "default"}}))


# -- the command -------------------------------------------------------------------------------
def test_cli_writes_a_lab_that_rules_renders_and_lists_warnings(tmp_path):
    out = tmp_path / "mine.yaml"
    runner = CliRunner()
    result = runner.invoke(cli, ["import", str(CLUSTERS / "kubeadm-v1.20.yaml"), "--rules",
                                 str(NODES / "kubeadm-v1.20-docker.rules"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "4 Service(s)" in result.output
    assert "warning: Service default/nginx-ext (" in result.output
    rules = runner.invoke(cli, ["rules", str(out)])
    assert rules.exit_code == 0 and "KUBE-SVC-TCOU7JCQXEZGVUNU" in rules.output
    diff = runner.invoke(cli, ["rules", str(out), "--diff",
                               str(NODES / "kubeadm-v1.20-docker.rules")])
    assert diff.exit_code == 1  # it differs: v1.20's layout
    # the kubernetes Service (hand-made endpoint at the node's address) is rebuilt: its endpoint
    # chain is the real node's, name for name, rule for rule
    assert "KUBE-SVC-NPX46M4PTMTKRN6Y: unexpected chain" not in diff.output
    assert "KUBE-SEP-" not in "".join(line for line in diff.output.splitlines()
                                      if "kubernetes" in line)
    # kube-dns's endpoints are the node's; its chain differs only by where v1.20 put the
    # masquerade rule (in KUBE-SERVICES, v1.22+ in KUBE-SVC).
    assert "KUBE-SEP-YIL6JZP7A3QYXJU2" not in diff.output
    [dns] = [line for line in diff.output.splitlines() if "KUBE-SVC-TCOU7JCQXEZGVUNU" in line]
    assert "KUBE-SVC-TCOU7JCQXEZGVUNU rule 1: missing:" in dns and "KUBE-MARK-MASQ" in dns


def test_cli_replaces_a_link_planted_at_the_output_name_instead_of_writing_through_it(tmp_path):
    """Run as root in a shared directory, `-o NAME` must not write where someone's link points."""
    victim = tmp_path / "victim.conf"
    victim.write_text("keep me\n")
    out = tmp_path / "lab.yaml"
    out.symlink_to(victim)
    result = CliRunner().invoke(cli, ["import", str(CLUSTERS / "lab-3-minikube.yaml"),
                                      "--cluster-cidr", "10.244.0.0/16", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "keep me\n"
    assert not out.is_symlink() and "clusterIP: 10.104.5.205" in out.read_text()


def test_cli_reads_standard_input_and_writes_standard_output(tmp_path):
    runner = CliRunner()
    text = (CLUSTERS / "lab-3-minikube.yaml").read_text()
    result = runner.invoke(cli, ["import", "-", "--cluster-cidr", "10.244.0.0/16", "-o", "-"],
                           input=text)
    assert result.exit_code == 0, result.output
    assert "from <stdin>" in result.output and "clusterIP: 10.104.5.205" in result.output


def test_cli_exits_1_with_the_reasons_when_nothing_is_usable(tmp_path):
    bad = tmp_path / "cm.yaml"
    bad.write_text(objects({"kind": "ConfigMap", "metadata": {"name": "x", "namespace": "n"}}))
    out = tmp_path / "out.yaml"
    done = subprocess.run([sys.executable, "-m", "lab_runner", "import", str(bad), "-o", str(out)],
                          capture_output=True, text=True, cwd=ROOT, env={
                              "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(ROOT),
                              "COLUMNS": "200"})
    assert done.returncode == 1, done
    assert "error: nothing to build" in done.stderr and "ConfigMap n/x" in done.stderr
    assert str(bad) in done.stderr and not out.exists()


def test_several_files_import_as_one_list(tmp_path):
    whole = yaml.safe_load((CLUSTERS / "lab-3-minikube.yaml").read_text())
    first, second = tmp_path / "svc.json", tmp_path / "rest.yaml"
    first.write_text(json.dumps({"kind": "List", "items": whole["items"][:2]}))
    # `kubectl get pods -o yaml` of one kind may come back as a PodList whose items lack `kind`.
    pods = [{k: v for k, v in i.items() if k != "kind"} for i in whole["items"][2:6]]
    second.write_text(yaml.safe_dump({"kind": "PodList", "items": pods}) + "---\n"
                      + yaml.safe_dump(whole["items"][6]))
    _, result, lab = import_lab([str(first), str(second)],
                                Options(cluster_cidr=ipaddress.IPv4Network("10.244.0.0/16")))
    assert result.warnings == []
    assert len(lab.pods) == 4 and all(p.containers == 2 for p in lab.pods)  # from the Pod objects
    assert lab.nodes[0].name == "minikube"


def test_kind_hand_made_slices_host_network_and_shared_pods_are_all_rebuilt():
    """fixtures/real-clusters/kind-v1.31-hand-made-slices.yaml: what lab.yaml once left out."""
    text, result, lab = import_lab([str(CLUSTERS / "kind-v1.31-hand-made-slices.yaml")],
                                   Options(cluster_cidr=ipaddress.IPv4Network("10.244.0.0/16")))
    # only the endpoint outside the cluster is left out (and so its Service)
    assert {w.subject for w in result.warnings} == {"Service shop/legacy-db"}
    assert said(result, "Service shop/legacy-db", "endpoint 203.0.113.10 is no pod's")
    assert [s.name for s in lab.services] == ["kubernetes", "node-exporter", "web", "web-admin"]
    # two hostNetwork pods at the node's address: the apiserver (no Pod object) and node-exporter
    node_ip = lab.nodes[0].ip
    assert {(p.name, p.ip, p.host_network, p.slice_node) for p in lab.pods if p.host_network} == {
        ("host-kind-control-plane", node_ip, True, ""),
        ("node-exporter-4xk8p", node_ip, True, "kind-control-plane")}
    assert [e.pod.name for e in lab.service("default", "kubernetes").endpoints] == [
        "host-kind-control-plane"]
    # web and web-admin name the same two pods on different ports
    admin = lab.service("shop", "web-admin")
    assert [(str(e.pod.ip), e.ports, e.pod.terminating) for e in admin.endpoints] == [
        ("10.244.0.5", (("admin", 9090),), False), ("10.244.0.6", (("admin", 9090),), True)]
    rules = render(lab)
    for address in ("172.18.0.2:6443", "172.18.0.2:9100", "10.244.0.5:8080", "10.244.0.6:8080",
                    "10.244.0.5:9090"):
        assert f"--to-destination {address}" in rules
    assert "--to-destination 10.244.0.6:9090" not in rules  # terminating: a fallback only
    assert lab_file.parse(text, lab.source) == lab  # the written file loads as the same lab
