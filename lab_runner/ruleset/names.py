"""kube-proxy's chain names, computed exactly as pkg/proxy/iptables/proxier.go does."""

from __future__ import annotations

import hashlib

# Top-level chains (both v1.23 and v1.30 unless noted).
KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_MARK_DROP = "KUBE-MARK-DROP"  # v1.23: ensured (empty) by kube-proxy, filled by kubelet
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"  # v1.30
KUBE_FIREWALL = "KUBE-FIREWALL"  # v1.30: kube-proxy's copy of kubelet's localnet guard
KUBE_PROXY_CANARY = "KUBE-PROXY-CANARY"

SERVICE_PREFIX = "KUBE-SVC-"
LOCAL_SERVICE_PREFIX = "KUBE-SVL-"  # v1.30, Local traffic policy only
EXTERNAL_PREFIX = "KUBE-EXT-"  # v1.30, node ports, load balancer IPs and external IPs only
FIREWALL_PREFIX = "KUBE-FW-"  # LoadBalancer source ranges only
XLB_PREFIX = "KUBE-XLB-"  # v1.23, externalTrafficPolicy Local only
ENDPOINT_PREFIX = "KUBE-SEP-"
PER_SERVICE_PREFIXES = (SERVICE_PREFIX, LOCAL_SERVICE_PREFIX, EXTERNAL_PREFIX, FIREWALL_PREFIX,
                        XLB_PREFIX, ENDPOINT_PREFIX)


_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_BASE32_PAIRS = [_BASE32[i >> 5] + _BASE32[i & 31] for i in range(1024)]  # 10 bits -> 2 letters


def hash16(text: str) -> str:
    """First 16 characters of base32(sha256(text)), kube-proxy's portProtoHash.

    The 16 letters are the first 80 bits of the digest, read 10 bits (two letters) at a time:
    the same as base64.b32encode(digest)[:16], about three times faster (one per endpoint).
    """
    bits = int.from_bytes(hashlib.sha256(text.encode()).digest()[:10], "big")
    pairs = _BASE32_PAIRS
    return (pairs[bits >> 70] + pairs[(bits >> 60) & 1023] + pairs[(bits >> 50) & 1023]
            + pairs[(bits >> 40) & 1023] + pairs[(bits >> 30) & 1023] + pairs[(bits >> 20) & 1023]
            + pairs[(bits >> 10) & 1023] + pairs[bits & 1023])


def port_proto_hash(port_name: str, protocol: str) -> str:
    """The suffix shared by a service port's KUBE-SVC/SVL/EXT/FW/XLB chains."""
    return hash16(port_name + protocol.lower())


def service_chain(port_name: str, protocol: str) -> str:
    """KUBE-SVC-…: `port_name` is `ns/svc:port` (`ns/svc` when unnamed), protocol any case."""
    return SERVICE_PREFIX + port_proto_hash(port_name, protocol)


def endpoint_chain(port_name: str, protocol: str, endpoint: str) -> str:
    """KUBE-SEP-… for one endpoint given as the plain "ip:port" string."""
    return ENDPOINT_PREFIX + hash16(port_name + protocol.lower() + endpoint)


def local_service_chain(port_name: str, protocol: str) -> str:
    """KUBE-SVL-… (v1.30): this node's endpoints, for internal or external traffic policy Local."""
    return LOCAL_SERVICE_PREFIX + port_proto_hash(port_name, protocol)


def external_chain(port_name: str, protocol: str) -> str:
    """KUBE-EXT-… (v1.30): traffic to a node port, load balancer IP or external IP (a ClusterIP
    Service has one only when it lists externalIPs)."""
    return EXTERNAL_PREFIX + port_proto_hash(port_name, protocol)


def firewall_chain(port_name: str, protocol: str) -> str:
    """KUBE-FW-…: only for LoadBalancer services with source ranges."""
    return FIREWALL_PREFIX + port_proto_hash(port_name, protocol)


def xlb_chain(port_name: str, protocol: str) -> str:
    """KUBE-XLB-… (v1.23): only for externalTrafficPolicy Local."""
    return XLB_PREFIX + port_proto_hash(port_name, protocol)


def is_per_service_chain(name: str) -> bool:
    """True for the hashed chains kube-proxy creates and deletes per service or endpoint."""
    return name.startswith(PER_SERVICE_PREFIXES)
