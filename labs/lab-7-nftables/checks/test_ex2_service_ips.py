"""Exercise 2 (service-ips): the map sends 10.104.5.205:8080/TCP, and nothing else, to the
Service."""

import pytest
from conftest import SERVICE, every_endpoint_reached_check, refused_like_kube_proxy

from lab_runner.evidence.probing import Target
from lab_runner.grading.common_checks import every_caller_check

# The same address on the pods' own port, and the Service's port over UDP: kube-proxy's
# cluster-ips-check rejects both (a ClusterIP answers on its service ports alone).
OTHERS = (Target(SERVICE.ip, 80, "tcp"), Target(SERVICE.ip, SERVICE.port, "udp"))

test_every_caller = every_caller_check(SERVICE)
test_every_endpoint_reached = every_endpoint_reached_check()


@pytest.mark.check("other-destinations")
def test_other_destinations(sandbox):
    refused_like_kube_proxy(sandbox, OTHERS)
