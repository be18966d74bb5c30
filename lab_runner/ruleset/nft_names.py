"""kube-proxy's nftables names (pkg/proxy/nftables/proxier.go), computed as its proxier does."""

from __future__ import annotations

import base64
import hashlib

TABLE = "kube-proxy"  # everything lives in `table ip kube-proxy`: no KUBE- prefixes needed

# Top-level chains, sets and maps (the same in every profile the kit reproduces).
SERVICES = "services"
SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
NODEPORT_IPS = "nodeport-ips"
CLUSTER_IPS = "cluster-ips"
SERVICE_ENDPOINTS_CHECK = "service-endpoints-check"
NODEPORT_ENDPOINTS_CHECK = "nodeport-endpoints-check"
NO_ENDPOINT_SERVICES = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
REJECT_CHAIN = "reject-chain"
CLUSTER_IPS_CHECK = "cluster-ips-check"
FIREWALL_IPS = "firewall-ips"
FIREWALL_CHECK = "firewall-check"
MARK_MASQ = "mark-for-masquerade"
MASQUERADING = "masquerading"

SERVICE_PREFIX = "service-"  # the "Cluster" traffic policy chain: what a ClusterIP reaches
LOCAL_PREFIX = "local-"
EXTERNAL_PREFIX = "external-"
ENDPOINT_PREFIX = "endpoint-"
AFFINITY_PREFIX = "affinity-"  # a set, not a chain: the client IPs an endpoint is sticky for
FIREWALL_PREFIX = "firewall-"

# knftables.NameLengthMax (256) minus chainNamePrefixLengthMax (16): the longest base name.
BASE_LENGTH_MAX = 256 - 16


def hash_and_truncate(name: str) -> str:
    """hashAndTruncate: the first 8 letters of base32(sha256(name)), "-", name; cut to 240.

    The hash keeps names unique if the end is ever cut, and makes endpoint chains of one
    service that differ in a digit easy to tell apart.
    """
    encoded = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()
    name = encoded[:8] + "-" + name
    if len(name) > BASE_LENGTH_MAX:
        name = name[:BASE_LENGTH_MAX - 3] + "..."
    return name


def _parts(namespace: str, service: str, protocol: str, port_name: str | None) -> str:
    # "/" separates the parts: chain names may hold it, Kubernetes names may not.
    return f"{namespace}/{service}/{protocol.lower()}/{port_name or ''}"


def service_port_base(namespace: str, service: str, protocol: str,
                      port_name: str | None) -> str:
    """servicePortChainNameBase: `HASH-ns/svc/proto/portName` (portName empty when unnamed)."""
    return hash_and_truncate(_parts(namespace, service, protocol, port_name))


def endpoint_base(namespace: str, service: str, protocol: str, port_name: str | None,
                  endpoint: str) -> str:
    """servicePortEndpointChainNameBase: `HASH-ns/svc/proto/portName__ip/port` for "ip:port"."""
    ip, _, port = endpoint.rpartition(":")
    ip = ip.strip("[]").replace(":", ".")  # an IPv6 address's colons are not allowed in names
    return hash_and_truncate(f"{_parts(namespace, service, protocol, port_name)}__{ip}/{port}")


def service_chain(namespace: str, service: str, protocol: str, port_name: str | None) -> str:
    """service-…: the chain a ClusterIP's verdict map element goes to."""
    return SERVICE_PREFIX + service_port_base(namespace, service, protocol, port_name)


def external_chain(namespace: str, service: str, protocol: str, port_name: str | None) -> str:
    """external-…: NodePort, LoadBalancer and external IPs only; never for a ClusterIP."""
    return EXTERNAL_PREFIX + service_port_base(namespace, service, protocol, port_name)


def firewall_chain(namespace: str, service: str, protocol: str, port_name: str | None) -> str:
    """firewall-…: LoadBalancer source ranges only."""
    return FIREWALL_PREFIX + service_port_base(namespace, service, protocol, port_name)


def endpoint_chain(namespace: str, service: str, protocol: str, port_name: str | None,
                   endpoint: str) -> str:
    """endpoint-…: masquerade hairpin traffic, then DNAT to "ip:port"."""
    return ENDPOINT_PREFIX + endpoint_base(namespace, service, protocol, port_name, endpoint)


def affinity_set(namespace: str, service: str, protocol: str, port_name: str | None,
                 endpoint: str) -> str:
    """affinity-…: the set of client addresses that stick to this endpoint (ClientIP)."""
    return AFFINITY_PREFIX + endpoint_base(namespace, service, protocol, port_name, endpoint)


def is_service_chain(name: str) -> bool:
    """isServiceChainName: per-service and per-endpoint chains, and only they, hold a "/"."""
    return "/" in name
