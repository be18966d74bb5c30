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


# -- beyond ClusterIP (issue 16) ---------------------------------------------------------------
def newer(change):
    """BASE in the v1.30 profile with `change` applied to its one Service."""
    def apply(d):
        d["profile"] = "v1.30"
        change(d["services"][0])
    return edit(apply)


def test_node_port_load_balancer_and_policies_load():
    def change(svc):
        svc.update(type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=32000,
                   loadBalancerIPs=["203.0.113.10"], loadBalancerSourceRanges=[" 198.51.100.0/24"],
                   externalIPs=["192.168.49.200"], internalTrafficPolicy="Local")
        svc["ports"][0]["nodePort"] = 30080
    svc = lab_file.parse(newer(change)).services[0]
    assert (svc.type, svc.ports[0].node_port, svc.health_check_node_port) == ("LoadBalancer", 30080,
                                                                             32000)
    assert [str(a) for a in svc.load_balancer_ips + svc.external_ips] == ["203.0.113.10",
                                                                        "192.168.49.200"]
    assert [str(r) for r in svc.source_ranges] == ["198.51.100.0/24"]  # kube-proxy trims spaces
    assert svc.external_policy_local and svc.internal_policy_local


def test_node_port_outside_the_range_names_the_field_and_the_range():
    def change(svc):
        svc["type"] = "NodePort"
        svc["ports"][0]["nodePort"] = 8080
    [problem] = problems_of(newer(change))
    assert "services[0].ports[0].nodePort" in problem
    assert "8080 is outside the node port range 30000-32767 (nodePortRange)" in problem


def test_a_lab_can_widen_the_node_port_range_and_a_bad_range_is_named():
    def change(d):
        d.update(profile="v1.30", nodePortRange="3000-32767")
        d["services"][0]["type"] = "NodePort"
        d["services"][0]["ports"][0]["nodePort"] = 3001
    assert lab_file.parse(edit(change)).services[0].ports[0].node_port == 3001
    problems = problems_of(edit(lambda d: d.update(nodePortRange="32767-30000")))
    assert any(p.endswith("nodePortRange: '32767-30000' is not a port range like 30000-32767")
               for p in problems)


def test_external_traffic_policy_on_a_cluster_ip_service_is_refused():
    [problem] = problems_of(newer(lambda svc: svc.update(externalTrafficPolicy="Local")))
    assert "services[0].externalTrafficPolicy: may only be set on a NodePort or LoadBalancer" in problem


def test_fields_of_other_service_types_are_named():
    def change(svc):
        svc.update(type="NodePort", loadBalancerIPs=["203.0.113.10"], healthCheckNodePort=32000)
        svc["ports"][0]["nodePort"] = 30080
    problems = problems_of(newer(change))
    assert any("services[0].loadBalancerIPs: only a Service of type LoadBalancer" in p
               and "this one is NodePort" in p for p in problems)
    assert any("services[0].healthCheckNodePort: only a LoadBalancer Service with "
               "externalTrafficPolicy: Local" in p for p in problems)
    [problem] = problems_of(newer(lambda svc: svc["ports"][0].update(nodePort=30080)))
    assert "services[0].ports[0].nodePort: a ClusterIP Service has no node ports" in problem


def test_two_services_cannot_share_a_node_port():
    def change(d):
        d["profile"] = "v1.30"
        first = d["services"][0]
        first.update(type="NodePort")
        first["ports"][0]["nodePort"] = 30080
        d["services"].append({**first, "name": "web2", "clusterIP": "10.96.0.11",
                              "ports": [{"name": "p", "port": 81, "nodePort": 30080}]})
    [problem] = problems_of(edit(change))
    assert "services[1].ports[0].nodePort: 30080/TCP is already the node port of ns/web" in problem


def test_the_v1_23_profile_names_the_field_it_cannot_render():
    def change(d):
        d["services"][0]["internalTrafficPolicy"] = "Local"
    [problem] = problems_of(edit(change))
    assert problem.startswith("line ")
    assert ("services[0].internalTrafficPolicy: internalTrafficPolicy: Local needs profile v1.30 "
            "or later" in problem)


def test_terminating_pods_are_not_ready_but_may_still_serve():
    def change(d):
        d["pods"][0]["terminating"] = True
        d["pods"][1].update(terminating=True, ready=False, nodeName="")
    lab = lab_file.parse(edit(change))
    serving, gone = lab.pods
    assert (serving.ready, serving.serving, serving.terminating) == (False, True, True)
    assert (gone.ready, gone.serving, gone.slice_node) == (False, False, "")
    assert serving.slice_node == "n1"  # without nodeName: the node it runs on
    # The endpoints controller's Ready endpoints (what the v1.23 profile and kubectl use).
    assert endpoints_for(lab, lab.services[0], lab.services[0].ports[0]) == []


def test_kube_proxy_options_are_flags():
    lab = lab_file.parse(edit(lambda d: d.update(kubeProxy={"masqueradeAll": True, "nfacct": True})))
    assert (lab.masquerade_all, lab.nfacct) == (True, True)
    [problem] = problems_of(edit(lambda d: d.update(kubeProxy={"masqueradeAll": "yes"})))
    assert "kubeProxy.masqueradeAll: must be true or false, got 'yes'" in problem


def test_proxy_mode_is_iptables_unless_the_lab_chooses_nftables_on_a_profile_that_has_it():
    assert lab_file.parse(edit(lambda d: None)).proxy_mode == "iptables"
    chosen = lab_file.parse(edit(lambda d: d.update(profile="v1.34", kubeProxy={"mode": "nftables"})))
    assert chosen.proxy_mode == "nftables"
    [problem] = problems_of(edit(lambda d: d.update(profile="v1.30", kubeProxy={"mode": "nftables"})))
    assert "kubeProxy.mode: nftables mode needs profile v1.34" in problem and "v1.30" in problem
    [problem] = problems_of(edit(lambda d: d.update(kubeProxy={"mode": "ipvs"})))
    assert "kubeProxy.mode: 'ipvs' is not valid; choose one of: iptables, nftables" in problem


# -- hand-made endpoints, hostNetwork pods, addresses shared by Services (issue 15) ---------------
EXTRA_SERVICES = """\
  - namespace: ns
    name: metrics
    clusterIP: 10.96.0.11
    ports: [{name: m, port: 9100, targetPort: 9100}]
    endpoints:
      - {address: 172.17.0.2, ports: {m: 9102}}
      - {address: 192.168.49.2, ready: false, serving: true, terminating: true, nodeName: n9}
  - namespace: ns
    name: web-admin
    clusterIP: 10.96.0.12
    ports: [{port: 8080}]
    endpoints: [{address: 172.17.0.2, port: 81}]
"""
HOST_NETWORK_POD = """\
  - name: agent
    namespace: kube-system
    hostNetwork: true
    ports: [{containerPort: 9100}]
"""
FORMS = (BASE.replace("clients:", EXTRA_SERVICES + "clients:")
         .replace("services:", HOST_NETWORK_POD + "services:"))


def test_a_service_without_selector_takes_its_endpoints_from_the_lab_file():
    lab = lab_file.parse(FORMS)
    metrics = lab.service("ns", "metrics")
    assert metrics.selector == {}
    # ready endpoints only, as the endpoints controller would list them
    assert [(e.pod, e.address) for e in endpoints_for(lab, metrics, metrics.ports[0])] == [
        ("web-1", "172.17.0.2:9102")]
    agent = metrics.endpoints[1].pod
    assert (agent.name, agent.host_network, agent.ready, agent.serving, agent.terminating,
            agent.slice_node) == ("agent", True, False, True, True, "n9")


def test_a_host_network_pod_is_at_its_nodes_address_beside_the_node():
    lab = lab_file.parse(FORMS)
    agent = lab.pod("agent")
    assert agent.ip == lab.nodes[0].ip == ipaddress.IPv4Address("192.168.49.2")
    assert agent.node == "n1"


def test_one_pod_address_shared_by_three_services_with_different_ports():
    lab = lab_file.parse(FORMS)
    by_service = {s.name: [e.address for e in endpoints_for(lab, s, p)]
                  for s in lab.services for p in s.ports}
    assert by_service == {"web": ["172.17.0.2:80", "172.17.0.3:8000"],
                          "metrics": ["172.17.0.2:9102"], "web-admin": ["172.17.0.2:81"]}


def test_the_renderer_writes_a_host_network_endpoint_with_the_node_address():
    from lab_runner.ruleset.render import render
    lab = lab_file.parse(FORMS.replace("ready: false, serving: true, terminating: true, ", ""))
    text = render(lab)
    sep = next(line.split()[1] for line in text.splitlines()
               if "--to-destination 192.168.49.2:9100" in line)
    # kube-proxy's hairpin rule: a node's own traffic to itself through the Service masquerades
    assert any(line.startswith(f"-A {sep} ") and line.endswith("-s 192.168.49.2 -j KUBE-MARK-MASQ")
               for line in text.splitlines())


def test_a_terminating_hand_made_endpoint_is_a_fallback_only():
    from lab_runner.ruleset.render import render
    lab = lab_file.parse(FORMS)
    # the ready 172.17.0.2:9102 is used; the serving-terminating node endpoint is not
    assert "192.168.49.2:9100" not in render(lab, "v1.30")
    only_terminating = FORMS.replace("- {address: 172.17.0.2, ports: {m: 9102}}\n", "")
    assert "--to-destination 192.168.49.2:9100" in render(lab_file.parse(only_terminating), "v1.30")


@pytest.mark.parametrize("change, path, words", [
    (lambda d: d["services"][1]["endpoints"].append({"address": "172.17.0.99"}),
     "services[1].endpoints[2].address", "no pod's address"),
    (lambda d: d["pods"].pop(), "services[1].endpoints[1].address",
     "node n1's address, and no pod on n1 has hostNetwork"),
    (lambda d: d["services"][1]["endpoints"][0].update(ports={"x": 1}),
     "services[1].endpoints[0].ports.x", "its ports are: m"),
    (lambda d: d["services"][1]["endpoints"][0].update(ports={"m": 0}),
     "services[1].endpoints[0].ports.m", "port number"),
    (lambda d: d["services"][1]["endpoints"][0].update(ports=[9102]),
     "services[1].endpoints[0].ports", "must map service port names to port numbers"),
    (lambda d: d["services"][2]["endpoints"][0].update(port="x"),
     "services[2].endpoints[0].port", "port number"),
    (lambda d: d["services"][1]["endpoints"][0].update(port=1),
     "services[1].endpoints[0].port", "either port or ports"),
    (lambda d: d["services"][1]["endpoints"][0].update(terminating=True),
     "services[1].endpoints[0].ready", "set ready: false"),
    (lambda d: d["services"][1]["endpoints"][0].update(nodeName=3),
     "services[1].endpoints[0].nodeName", "must be a node name"),
    (lambda d: d["services"][1]["endpoints"][0].update(colour="red"),
     "services[1].endpoints[0].colour", "unknown field"),
    (lambda d: d["services"][1]["endpoints"].append({"address": "172.17.0.2",
                                                       "ports": {"m": 9102}}),
     "services[1].endpoints[2]", "172.17.0.2:9102 is listed twice"),
    (lambda d: d["services"][1]["ports"][0].update(targetPort="metrics"),
     "services[1].endpoints[1]", "give this endpoint's port number"),
    (lambda d: d["services"][1].update(selector={"app": "web"}),
     "services[1].endpoints", "hand-made endpoints are for a Service without selector"),
    (lambda d: d["services"][1].update(endpoints="x"), "services[1].endpoints", "must be a list"),
    (lambda d: d["pods"][2].update(ip="192.168.49.3"), "pods[2].ip",
     "a hostNetwork pod has its node's address: 192.168.49.2"),
    (lambda d: d["pods"][0].pop("ip"), "pods[0]", "only a hostNetwork pod"),
    (lambda d: d["pods"][2].update(hostNetwork="yes"), "pods[2].hostNetwork", "true or false"),
])
def test_each_bad_hand_made_endpoint_or_host_network_pod_is_named(change, path, words):
    data = yaml.safe_load(FORMS)
    change(data)
    problems = problems_of(yaml.safe_dump(data, sort_keys=False))
    assert any(f": {path}: " in p and words in p and p.startswith("line ")
               for p in problems), problems


def test_host_network_pods_share_the_node_address_but_not_a_port():
    data = yaml.safe_load(FORMS)
    data["pods"].append({"name": "agent-2", "hostNetwork": True,
                         "ports": [{"containerPort": 9200}]})
    lab = lab_file.parse(yaml.safe_dump(data))
    assert lab.pod("agent-2").ip == lab.pod("agent").ip
    # an endpoint at the node's address belongs to the pod listening on its port
    data["services"][1]["endpoints"][1].update(port=9200)
    lab = lab_file.parse(yaml.safe_dump(data))
    assert lab.service("ns", "metrics").endpoints[1].pod.name == "agent-2"
    data["pods"][-1]["ports"] = [{"containerPort": 9100}]
    problems = problems_of(yaml.safe_dump(data))
    assert any("agent and agent-2 both listen on 9100/TCP of node n1" in p for p in problems)
    assert any("several hostNetwork pods" in p for p in problems), problems


def test_a_pod_may_still_not_take_another_pods_or_the_nodes_address():
    data = yaml.safe_load(FORMS)
    data["pods"][1]["ip"] = "172.17.0.2"
    assert any("172.17.0.2 is used by both pod ns/web-1 and pod ns/web-2" in p
               for p in problems_of(yaml.safe_dump(data)))
    data["pods"][1]["ip"] = "192.168.49.2"
    assert any("192.168.49.2 is outside node n1's pod subnet" in p and "hostNetwork: true" in p
               for p in problems_of(yaml.safe_dump(data)))


def test_a_lab_of_5000_pods_and_1000_services_loads(capsys):
    """The per-pod and per-service checks are linear (sets and a label index): the figure is
    reported, not asserted (it was ~11 s for 5,000 pods when they were quadratic)."""
    import time
    lines = ["id: big", "title: big", "clusterCIDR: 10.0.0.0/8", "serviceCIDR: 172.20.0.0/16",
             "nodes: [{name: n1, bridge: {name: cbr0, address: 10.1.0.1/16}}]", "pods:"]
    lines += [f"  - {{name: p{i}, ip: 10.1.{i // 250}.{i % 250 + 2}, labels: {{app: a{i % 1000}}},"
              f" ports: [{{name: http, containerPort: 80}}]}}" for i in range(5000)]
    lines.append("services:")
    lines += [f"  - {{name: s{j}, clusterIP: 172.20.{j // 250}.{j % 250 + 1}, "
              f"selector: {{app: a{j}}}, ports: [{{port: 80, targetPort: http}}]}}"
              for j in range(1000)]
    started = time.perf_counter()
    lab = lab_file.parse("\n".join(lines) + "\n")
    took = time.perf_counter() - started
    seventh = lab.services[7]
    assert len(lab.pods) == 5000 and len(endpoints_for(lab, seventh, seventh.ports[0])) == 5
    with capsys.disabled():
        print(f"\n5,000 pods and 1,000 services loaded in {took:.2f} s")


def test_the_readme_example_of_hand_made_endpoints_loads():
    """README "Your own cluster" shows the forms; its snippet, on two nodes, is a valid lab."""
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    snippet = readme.split("In lab.yaml these read:\n\n```yaml\n", 1)[1].split("```", 1)[0]
    text = textwrap.dedent("""\
        id: t
        title: readme
        clusterCIDR: 10.244.0.0/16
        nodes:
          - {name: node-a, bridge: {name: cni0, address: 10.244.0.1/24}}
          - {name: node-b, bridge: {name: cni0, address: 10.244.1.1/24}}
        """) + snippet.replace("pods:\n", "pods:\n  - {name: a, ip: 10.244.0.5, node: node-a}\n"
                               "  - {name: b, ip: 10.244.0.6, node: node-a}\n")
    lab = lab_file.parse(text)
    admin = lab.service("default", "web-admin")
    assert [(e.pod.name, e.pod.slice_node) for e in admin.endpoints] == [("a", "node-a"),
                                                                        ("b", "node-b")]
    assert lab.pod("node-exporter").ip == lab.nodes[0].ip
