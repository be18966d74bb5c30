"""kubectl views: the seed's three listings character for character, plus kubectl's formatting rules."""

from __future__ import annotations

import re
from dataclasses import replace
from ipaddress import ip_address
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from lab_runner import lab_file
from lab_runner.errors import LabError
from lab_runner.views.kubectl import (KubectlError, NotFound, NotModelled, endpoint_subsets,
                                      format_endpoints, human_duration, kubectl, tabwrite)

SEED = Path(__file__).resolve().parents[2] / "fixtures" / "seed"
NOW = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
# The seed's pods are 4h39m old and its service 5h56m: the Deployment was rolled 1h17m later.
POD_AGE = timedelta(hours=4, minutes=39)
SEED_AGES = {"services": timedelta(hours=1, minutes=17)}

SMALL_LAB = """
id: lab-t
title: two-port test lab
clusterCIDR: 10.244.0.0/16
nodes:
  - {name: minikube, ip: 192.168.49.2, bridge: {name: docker0, address: 172.17.0.1/16}}
pods:
  - name: web-b
    namespace: shop
    ip: 172.17.0.2
    labels: {app: web}
    ports: [{name: http, containerPort: 8000}, {name: metrics, containerPort: 9090}]
  - name: web-a
    namespace: shop
    ip: 172.17.0.10
    labels: {app: web}
    ports: [{name: http, containerPort: 8000}, {name: metrics, containerPort: 9090}]
services:
  - namespace: shop
    name: web
    labels: {tier: front, app: web}
    selector: {app: web}
    clusterIP: 10.96.0.50
    ports:
      - {name: http, port: 80, targetPort: http}
      - {name: metrics, port: 9090}
"""


@pytest.fixture(scope="module")
def lab3():
    return lab_file.load("lab-3")


@pytest.fixture(scope="module")
def small():
    return lab_file.parse(SMALL_LAB, "small.yaml")


def run(lab, command: str, age: timedelta = POD_AGE, **kwargs) -> str:
    return kubectl(lab, command.split(), started_at=NOW - age, now=NOW, **kwargs)


def mask_age(text: str) -> list[list[str]]:
    """The cells of each line with AGE left out (columns are at least 3 spaces apart)."""
    rows = [re.split(r" {3,}", line) for line in text.splitlines()]
    age = rows[0].index("AGE")
    return [row[:age] + row[age + 1:] for row in rows]


# -- the seed, character for character ----------------------------------------------------------

@pytest.mark.parametrize("command, fixture", [
    ("-n stateful-apps get svc", "kubectl-get-svc.txt"),
    ("-n stateful-apps describe svc my-app", "kubectl-describe-svc.txt"),
    ("-n stateful-apps get pod -o wide", "kubectl-get-pod-wide.txt"),
])
def test_seed_views_match_the_reference_text(lab3, command, fixture):
    expected = (SEED / fixture).read_text()
    got = run(lab3, command, age_offsets=SEED_AGES)
    assert got.splitlines() == expected.splitlines()
    assert got == expected  # trailing newline too: kubectl ends every line


def test_seed_tables_match_with_the_age_column_masked(lab3):
    # At another moment only AGE differs (and with it that column's width).
    for command, fixture in [("-n stateful-apps get svc", "kubectl-get-svc.txt"),
                             ("-n stateful-apps get pod -o wide", "kubectl-get-pod-wide.txt")]:
        got = run(lab3, command, age=timedelta(minutes=3))
        assert mask_age(got) == mask_age((SEED / fixture).read_text())


def test_flags_may_come_anywhere_and_in_any_spelling(lab3):
    expected = (SEED / "kubectl-get-svc.txt").read_text()
    for command in ["get svc -n stateful-apps", "get services --namespace stateful-apps",
                    "--namespace=stateful-apps get service", "-nstateful-apps get svc",
                    "kubectl -n stateful-apps get svc my-app", "-n stateful-apps get svc/my-app"]:
        assert run(lab3, command, age_offsets=SEED_AGES) == expected, command


# -- kubectl's duration format --------------------------------------------------------------------

@pytest.mark.parametrize("delta, text", [
    (timedelta(seconds=-5), "<invalid>"),
    (timedelta(seconds=-1.5), "0s"),  # Go truncates toward zero: -1 is "almost now"
    (timedelta(0), "0s"),
    (timedelta(seconds=45), "45s"),
    (timedelta(seconds=119), "119s"),
    (timedelta(minutes=2), "2m"),
    (timedelta(minutes=5, seconds=12), "5m12s"),
    (timedelta(minutes=10, seconds=30), "10m"),
    (timedelta(minutes=179), "179m"),
    (timedelta(hours=3), "3h"),
    (timedelta(hours=5, minutes=56, seconds=40), "5h56m"),
    (timedelta(hours=8, minutes=20), "8h"),
    (timedelta(hours=47, minutes=59), "47h"),
    (timedelta(days=2), "2d"),
    (timedelta(days=3, hours=4), "3d4h"),
    (timedelta(days=7, hours=23), "7d23h"),
    (timedelta(days=8, hours=5), "8d"),
    (timedelta(days=729), "729d"),
    (timedelta(days=730), "2y"),
    (timedelta(days=731), "2y1d"),
    (timedelta(days=365 * 9), "9y"),
])
def test_human_duration(delta, text):
    assert human_duration(delta) == text


def test_age_comes_from_the_lab_start(lab3):
    out = run(lab3, "get nodes", age=timedelta(seconds=45))
    assert out.splitlines()[1].split()[3] == "45s"


# -- endpoints ------------------------------------------------------------------------------------

def _with_pods(lab, count: int, ready: bool = True):
    template = lab.pods[0]
    pods = tuple(replace(template, name=f"my-app-{i}", ip=template.ip.__class__(f"172.17.0.{i + 2}"),
                         ready=ready) for i in range(count))
    return lab.with_changes(pods=pods)


@pytest.mark.parametrize("count, expected", [
    (1, "172.17.0.2:80"),
    (3, "172.17.0.2:80,172.17.0.3:80,172.17.0.4:80"),
    (4, "172.17.0.2:80,172.17.0.3:80,172.17.0.4:80 + 1 more..."),
    (9, "172.17.0.10:80,172.17.0.2:80,172.17.0.3:80 + 6 more..."),  # sorted as strings, as the API
])
def test_endpoints_are_shortened_after_three(lab3, count, expected):
    lab = _with_pods(lab3, count)
    service = lab.services[0]
    assert format_endpoints(endpoint_subsets(lab, service)) == expected
    assert f"Endpoints:         {expected}\n" in run(lab, "-n stateful-apps describe svc my-app")
    assert f"my-app   {expected}   " in run(lab, "-n stateful-apps get ep")


def test_no_selected_pod_shows_none_and_unready_pods_show_nothing(lab3):
    nobody = lab3.with_changes(pods=())
    assert "Endpoints:         <none>\n" in run(nobody, "-n stateful-apps describe svc my-app")
    assert "my-app   <none>      " in run(nobody, "-n stateful-apps get endpoints")
    # Pods that are selected but not ready sit in notReadyAddresses, which kubectl never prints.
    unready = _with_pods(lab3, 2, ready=False)
    assert "Endpoints:         \n" in run(unready, "-n stateful-apps describe svc my-app")


def test_a_not_ready_pod_shows_its_app_container_not_ready(lab3):
    pods = (replace(lab3.pods[0], ready=False),) + lab3.pods[1:]
    lab = lab3.with_changes(pods=pods)
    rows = run(lab, "-n stateful-apps get pods").splitlines()
    assert rows[1].split()[:4] == ["my-app-7f569f66d9-6dkwl", "1/2", "Running", "0"]
    assert rows[2].split()[1] == "2/2"
    assert "172.17.0.7" not in run(lab, "-n stateful-apps describe svc my-app")


def test_multi_port_service_repeats_the_port_block(small):
    assert run(small, "-n shop describe svc web") == (
        "Name:              web\n"
        "Namespace:         shop\n"
        "Labels:            app=web\n"
        "                   tier=front\n"
        "Annotations:       <none>\n"
        "Selector:          app=web\n"
        "Type:              ClusterIP\n"
        "IP Family Policy:  SingleStack\n"
        "IP Families:       IPv4\n"
        "IP:                10.96.0.50\n"
        "IPs:               10.96.0.50\n"
        "Port:              http  80/TCP\n"
        "TargetPort:        http/TCP\n"
        "Endpoints:         172.17.0.10:8000,172.17.0.2:8000\n"
        "Port:              metrics  9090/TCP\n"
        "TargetPort:        9090/TCP\n"
        "Endpoints:         172.17.0.10:9090,172.17.0.2:9090\n"
        "Session Affinity:  None\n"
        "Events:            <none>\n")


def test_get_lists_sorted_by_name_with_all_ports(small):
    assert run(small, "-n shop get pod -o wide").splitlines()[1].startswith("web-a ")
    assert run(small, "-n shop get svc -o wide").splitlines() == [
        "NAME   TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)           AGE     SELECTOR",
        "web    ClusterIP   10.96.0.50   <none>        80/TCP,9090/TCP   4h39m   app=web",
    ]
    # ports=nil: every port of the one subset, then shortened after three.
    assert run(small, "-n shop get ep").splitlines()[1] == (
        "web    172.17.0.10:8000,172.17.0.2:8000,172.17.0.10:9090 + 1 more...   4h39m")


def test_all_namespaces_adds_the_namespace_column(lab3, small):
    lines = run(lab3, "get pods -A").splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert lines[1].startswith("stateful-apps   my-app-7f569f66d9-6dkwl   2/2")
    assert run(lab3, "get nodes -A").splitlines()[0].startswith("NAME ")


def test_nodes(lab3):
    lines = run(lab3, "get nodes").splitlines()
    assert lines == ["NAME       STATUS   ROLES                  AGE     VERSION",
                     "minikube   Ready    control-plane,master   4h39m   v1.23.3"]
    wide = run(lab3, "get nodes -o wide").splitlines()
    assert wide[0].split()[5:7] == ["INTERNAL-IP", "EXTERNAL-IP"]
    assert wide[1].split()[5:7] == ["192.168.49.2", "<none>"]


# -- what is not there ----------------------------------------------------------------------------

def test_empty_namespace_prints_kubectls_message(lab3):
    assert run(lab3, "get svc") == "No resources found in default namespace.\n"
    assert run(lab3, "-n kube-system get pods -o wide") == "No resources found in kube-system namespace.\n"
    assert run(lab3, "-n nowhere describe svc") == "No resources found in nowhere namespace.\n"
    assert run(lab3.with_changes(pods=()), "get pods -A") == "No resources found\n"


def test_a_missing_name_is_kubectls_not_found(lab3):
    with pytest.raises(NotFound, match=r'Error from server \(NotFound\): services "nope" not found'):
        run(lab3, "-n stateful-apps get svc nope")
    with pytest.raises(NotFound, match='pods "my-app" not found'):
        run(lab3, "-n stateful-apps get pod my-app")
    # describe falls back to a name prefix, as kubectl does
    assert run(lab3, "-n stateful-apps describe svc my").startswith("Name:              my-app\n")


@pytest.mark.parametrize("command, what", [
    ("apply -f svc.yaml", "kubectl apply"),
    ("exec -it my-app -- sh", "kubectl exec"),
    ("get deploy", "kubectl get deploy"),
    ("get svc,pods", "kubectl get svc,pods"),
    ("describe pod my-app-7f569f66d9-dfrdh", "kubectl describe pod"),
    ("-n stateful-apps get svc -o yaml", "kubectl get -o yaml"),
    ("get pods --show-labels", "the flag --show-labels"),
    ("get pods a b", "kubectl get with several names (a b)"),
    ("", "kubectl without a command"),
])
def test_what_is_not_modelled_says_what_is(lab3, command, what):
    with pytest.raises(NotModelled) as caught:
        run(lab3, command)
    message = str(caught.value)
    assert message.startswith(f"{what} is not modelled by this lab; the lab models: kubectl get svc|")
    assert "describe svc" in message
    assert isinstance(caught.value, LabError)


def test_usage_errors_are_kubectls():
    lab = lab_file.load("lab-3")
    with pytest.raises(KubectlError, match="must specify the type of resource"):
        run(lab, "get")
    with pytest.raises(KubectlError, match="cannot be retrieved by name across all namespaces"):
        run(lab, "get svc my-app -A")
    with pytest.raises(KubectlError, match="cannot be retrieved by name across all namespaces"):
        run(lab, "describe svc my-app -A")


# -- the tabwriter ------------------------------------------------------------------------------

def test_tabwriter_blocks_minwidth_and_untouched_last_cell():
    assert tabwrite(["a\tb\tc", "aaaa\tb", "x", "y\tz"], minwidth=6, padding=3) == (
        "a      b     c\n"   # column 0 spans two lines: 4 + 3 = 7; column 1 only line 1: minwidth
        "aaaa   b\n"         # the last cell of a line is never padded
        "x\n"                # a line without tabs ends every column block
        "y     z\n")         # a new block, sized on its own: minwidth 6


def test_every_rule_profile_has_its_kubectl_release():
    """A lab on any profile the renderer writes shows its own release's kubectl output (the
    lookup falls back to v1.23 silently, so a missing entry would show the wrong era)."""
    from lab_runner.ruleset.render import PROFILES
    from lab_runner.views.kubectl import RELEASES

    assert set(RELEASES) == set(PROFILES)
    assert [RELEASES[p].kubelet.rsplit(".", 1)[0] for p in PROFILES] == list(PROFILES)


# -- the lab.yaml forms beyond a selected ClusterIP Service -------------------------------------

FORMS_LAB = """
id: lab-forms
title: a selector-less Service, a hostNetwork pod, NodePort and LoadBalancer
clusterCIDR: 10.244.0.0/16
profile: v1.30
nodes:
  - {name: node-a, ip: 192.168.49.2, bridge: {name: cni0, address: 10.244.0.1/24}}
pods:
  - {name: web-1, ip: 10.244.0.5, labels: {app: web}, ports: [{containerPort: 8080}]}
  - {name: web-2, ip: 10.244.0.6, labels: {app: web}, ports: [{containerPort: 8080}],
     ready: false}
  - {name: node-exporter, namespace: monitoring, hostNetwork: true, node: node-a,
     ports: [{containerPort: 9100}]}
services:
  - name: web-admin
    clusterIP: 10.96.44.11
    ports: [{name: admin, port: 8081}]
    endpoints:
      - {address: 10.244.0.6, ports: {admin: 9090}, ready: false}
      - {address: 192.168.49.2, ports: {admin: 9100}}
      - {address: 10.244.0.5, ports: {admin: 9090}}
  - name: web-np
    type: NodePort
    selector: {app: web}
    clusterIP: 10.96.44.12
    ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
  - name: web-lb
    type: LoadBalancer
    externalTrafficPolicy: Local
    selector: {app: web}
    clusterIP: 10.96.44.13
    ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30081}]
    loadBalancerIPs: [203.0.113.10]
    externalIPs: [198.51.100.7]
    loadBalancerSourceRanges: [203.0.113.0/25]
  - name: web-ext
    selector: {app: web}
    clusterIP: 10.96.44.14
    ports: [{port: 80, targetPort: 8080}]
    externalIPs: [198.51.100.8, 198.51.100.9]
"""


@pytest.fixture(scope="module")
def forms():
    return lab_file.parse(FORMS_LAB, "forms.yaml")


def describe_fields(text: str) -> list[tuple[str, str]]:
    """describe's lines as (title, value), the value's inner alignment squeezed to one space."""
    return [(title, " ".join(value.split())) for title, _, value in
            (line.partition(":") for line in text.splitlines())]


def test_get_svc_shows_type_external_ips_and_node_ports(forms):
    assert mask_age(run(forms, "get svc -o wide")) == [
        ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "SELECTOR"],
        ["web-admin", "ClusterIP", "10.96.44.11", "<none>", "8081/TCP", "<none>"],
        ["web-ext", "ClusterIP", "10.96.44.14", "198.51.100.8,198.51.100.9", "80/TCP", "app=web"],
        # getServiceExternalIP: the load balancer's ingress first, then the externalIPs.
        ["web-lb", "LoadBalancer", "10.96.44.13", "203.0.113.10,198.51.100.7", "80:30081/TCP",
         "app=web"],
        ["web-np", "NodePort", "10.96.44.12", "<none>", "80:30080/TCP", "app=web"],
    ]


def test_load_balancer_ips_are_a_sorted_set_clipped_unless_wide(forms):
    lb = replace(forms.service("default", "web-lb"), external_ips=(), load_balancer_ips=(
        ip_address("203.0.113.20"), ip_address("203.0.113.10"), ip_address("203.0.113.10")))
    pending = replace(lb, name="web-pending", load_balancer_ips=())
    lab = forms.with_changes(services=(lb, pending))
    assert [row[3] for row in mask_age(run(lab, "get svc"))[1:]] == [
        "203.0.113.10,...", "<pending>"]  # loadBalancerWidth 16: 13 characters and "..."
    assert mask_age(run(lab, "get svc -o wide"))[1][3] == "203.0.113.10,203.0.113.20"


def test_selector_less_service_shows_its_hand_made_endpoints(forms):
    # The not-ready endpoint is kept (notReadyAddresses) but not shown; addresses sort as strings.
    assert mask_age(run(forms, "get endpoints web-admin")) == [
        ["NAME", "ENDPOINTS"], ["web-admin", "10.244.0.5:9090,192.168.49.2:9100"]]
    assert "web-admin" in run(forms, "get ep")
    fields = describe_fields(run(forms, "describe svc web-admin"))
    assert ("Selector", "<none>") in fields
    assert ("Endpoints", "10.244.0.5:9090,192.168.49.2:9100") in fields
    assert ("TargetPort", "8081/TCP") in fields


def test_selector_less_service_without_endpoints_has_no_endpoints_object(forms):
    bare = replace(forms.service("default", "web-admin"), endpoints=())
    lab = forms.with_changes(services=(bare,))
    with pytest.raises(NotFound):
        run(lab, "get endpoints web-admin")
    assert ("Endpoints", "<none>") in describe_fields(run(lab, "describe svc web-admin"))


def test_describe_node_port_and_load_balancer(forms):
    assert describe_fields(run(forms, "describe svc web-lb"))[5:] == [
        ("Type", "LoadBalancer"),
        ("IP Family Policy", "SingleStack"),
        ("IP Families", "IPv4"),
        ("IP", "10.96.44.13"),
        ("IPs", "10.96.44.13"),
        ("External IPs", "198.51.100.7"),
        ("LoadBalancer Ingress", "203.0.113.10"),
        ("Port", "http 80/TCP"),
        ("TargetPort", "8080/TCP"),
        ("NodePort", "http 30081/TCP"),
        ("Endpoints", "10.244.0.5:8080"),
        ("Session Affinity", "None"),
        ("External Traffic Policy", "Local"),
        ("Internal Traffic Policy", "Cluster"),
        ("LoadBalancer Source Ranges", "203.0.113.0/25"),
        ("Events", "<none>"),
    ]
    np_fields = describe_fields(run(forms, "describe svc web-np"))
    assert ("NodePort", "<unset> 30080/TCP") in np_fields
    assert ("External Traffic Policy", "Cluster") in np_fields  # defaulted for NodePort only
    ext_fields = dict(describe_fields(run(forms, "describe svc web-ext")))
    assert ext_fields["External IPs"] == "198.51.100.8,198.51.100.9"
    assert "External Traffic Policy" not in ext_fields


def test_host_network_pod_shows_its_node_address(forms):
    rows = mask_age(run(forms, "-n monitoring get pods -o wide"))
    assert rows[1][:2] + rows[1][4:6] == ["node-exporter", "1/1", "192.168.49.2", "node-a"]
