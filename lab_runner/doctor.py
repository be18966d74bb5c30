"""`doctor`: check that this machine can run the labs, and say how to fix what is missing."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from dataclasses import dataclass

from lab_runner import PREFIX, runs, system_deps

APT = "sudo apt-get install -y"
CAP_NET_ADMIN = 12
FEATURE_PROBE = """*raw
:PREROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -d 10.255.0.1 --dport 9 -j TRACE
COMMIT
*nat
:KUBE-DOCTOR - [0:0]
-A KUBE-DOCTOR -m comment --comment "doctor" -m statistic --mode random --probability 0.5000000000 -j MARK --or-mark 0x4000
-A KUBE-DOCTOR -p tcp -m tcp -j DNAT --to-destination 10.255.0.2:80
-A KUBE-DOCTOR -m mark --mark 0x4000/0x4000 -m recent --name KUBE-DOCTOR --rcheck --seconds 10800 --reap -j RETURN
-A POSTROUTING -m addrtype --dst-type LOCAL -j MASQUERADE --random-fully
COMMIT
"""


@dataclass(frozen=True)
class Finding:
    what: str
    ok: bool
    detail: str
    fix: str = ""
    optional: bool = False  # a failure here does not stop the labs (e.g. no Docker engine)


def has_net_admin() -> bool:
    try:
        status = open("/proc/self/status").read()
    except OSError:  # not Linux: only the docker backend can run here
        return False
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    return False


def check_system_packages() -> list[Finding]:
    """Every program, library and file of lab_runner/system-packages.txt, with the package to install.

    One list for `make setup`, .ci/run, the Dockerfile and this check: what one of them knows,
    all of them know. Debian's sbin directories count even when they are not on PATH.
    """
    findings = []
    for package in system_deps.packages():
        for provision in package.provides:
            if provision.kind == "py":
                continue  # the interpreter's own modules: check_python covers what the kit imports
            where = provision.where()
            findings.append(Finding(f"{KIND_WORDS[provision.kind]} {provision.name}", bool(where),
                                    where or "not found", f"{APT} {package.name}"))
    return findings


KIND_WORDS = {"cmd": "tool", "lib": "library", "file": "file"}


def default_iptables() -> Finding:
    """Which variant a bare `iptables` is; the labs use nft unless told `--iptables legacy`."""
    path = system_deps.find_tool("iptables")
    if not path:
        return Finding("iptables variant", False, "no iptables command", f"{APT} iptables")
    out = subprocess.run([path, "-V"], capture_output=True, text=True).stdout.strip()
    variant = "nft" if "nf_tables" in out else "legacy" if "legacy" in out else "unknown"
    return Finding("iptables variant", True, f"`iptables` is {variant} ({out}); the labs use nft by "
                   "default, `--iptables legacy` for the other")


def check_kernel() -> list[Finding]:
    """Load kube-proxy's matches and targets into a scratch namespace, for real, then delete it."""
    if not (has_net_admin() and system_deps.find_tool("ip")
            and system_deps.find_tool("iptables-nft-restore")):
        return [Finding("kernel features", False, "not checked (needs root and iptables)",
                        "run `sudo lab-runner doctor`")]
    ns = f"{PREFIX}-{runs.scratch_run_id()}-doctor"
    findings = []
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
        for variant in ("nft", "legacy"):
            restore = subprocess.run(["ip", "netns", "exec", ns, f"iptables-{variant}-restore"],
                                     input=FEATURE_PROBE, capture_output=True, text=True)
            findings.append(Finding(
                f"kernel: statistic, mark, comment, recent, addrtype, DNAT, MASQUERADE "
                f"--random-fully, TRACE ({variant})", restore.returncode == 0,
                "loaded in a scratch namespace" if restore.returncode == 0 else restore.stderr.strip(),
                "a kernel with netfilter xt_statistic, xt_mark, xt_comment, xt_recent, "
                "xt_addrtype, nf_nat and xt_TRACE (any distribution kernel has them)"))
        ct = subprocess.run(["ip", "netns", "exec", ns, "conntrack", "-L"], capture_output=True,
                            text=True)
        findings.append(Finding("kernel: conntrack table readable", ct.returncode == 0,
                                ct.stderr.strip().splitlines()[-1] if ct.stderr.strip() else "ok",
                                f"{APT} conntrack"))
        forward = subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-n",
                                  "net.bridge.bridge-nf-call-iptables"], capture_output=True, text=True)
        findings.append(Finding("kernel: br_netfilter (bridged pod traffic seen by iptables)",
                                forward.returncode == 0, forward.stdout.strip() or forward.stderr.strip(),
                                "sudo modprobe br_netfilter"))
    except subprocess.CalledProcessError as exc:
        findings.append(Finding("network namespaces", False, exc.stderr.decode().strip(),
                                "run as root on Linux (ip netns add must work)"))
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    return findings


def check_python() -> list[Finding]:
    modules = [("scapy", "scapy"), ("rich", "rich"), ("click", "click"), ("yaml", "PyYAML"),
               ("testinfra", "pytest-testinfra"), ("docker", "docker"), ("pytest", "pytest")]
    return [Finding(f"python {pip}", importlib.util.find_spec(mod) is not None,
                    "importable" if importlib.util.find_spec(mod) else "missing",
                    "make venv   (or: pip install -e .)") for mod, pip in modules]


def check_docker() -> list[Finding]:
    """The engine the docker backend would use (DOCKER_HOST honoured), and the node image on it."""
    from lab_runner.backends import docker
    from lab_runner.errors import EnvironmentProblem

    try:
        engine = docker.describe_engine()
    except EnvironmentProblem:
        where = os.environ.get("DOCKER_HOST") or "the default socket"
        return [Finding("docker engine (for --backend docker)", False, f"none answers at {where}",
                        "only for --backend docker or docker compose: start Docker or set "
                        "DOCKER_HOST", optional=True)]
    image = docker.image_name()
    present = docker.has_image(image)
    return [Finding("docker engine (for --backend docker)", True, engine),
            Finding(f"docker image {image}", present, "present" if present else "not built",
                    f"docker build -t {image} .   (in the kit's directory)", optional=True)]


def diagnose() -> list[Finding]:
    # os.geteuid does not exist on Windows, where only the docker backend can run.
    euid = os.geteuid() if hasattr(os, "geteuid") else "n/a (not a POSIX system)"
    root = Finding("root / CAP_NET_ADMIN", has_net_admin(),
                   f"euid {euid}, CAP_NET_ADMIN {'present' if has_net_admin() else 'missing'}",
                   "run with sudo (`sudo make lab-3`), or use the container: `docker compose run --rm lab`")
    return [root, *check_system_packages(), default_iptables(), *check_kernel(), *check_python(),
            *check_docker()]
