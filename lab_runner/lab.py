"""A running lab: `with LiveLab.up(spec) as lab:` builds it, installs the chain set and always tears down."""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from lab_runner import deployments, lab_file
from lab_runner.backends.netns import NetnsBackend, client_ns, node_ns, pod_ns, uts_role
from lab_runner.commands import CommandResult, Place, Runner
from lab_runner.errors import LabError
from lab_runner.model import Lab
from lab_runner.ruleset import apply as iptables
from lab_runner.ruleset import nft_apply, nft_load
from lab_runner.runs import RunRecord, find_run, new_run_id
from lab_runner.safe_files import private_dir, write_file


class LiveLab:
    """A lab realised on this machine, addressed by host names: `node`, `client`, a pod's name."""

    def __init__(self, model: Lab, run: RunRecord, runner: Runner | None = None):
        self.model = model
        self.run = run
        self.runner = runner or Runner()
        self.backend = NetnsBackend(self.runner)

    # -- lifecycle -------------------------------------------------------------------------
    @classmethod
    @contextmanager
    def up(cls, spec: Lab | str | Path, **options) -> Iterator["LiveLab"]:
        """Build the lab, yield it, and tear it down whatever happens inside the block."""
        lab = cls.start(spec, transient=True, **options)
        try:
            yield lab
        finally:
            lab.down()

    @classmethod
    def start(cls, spec: Lab | str | Path, *, iptables_variant: str = "nft",
              profile: str | None = None, cluster_cidr: str | None = None,
              rules: bool = True, transient: bool = False,
              proxy_mode: str | None = None) -> "LiveLab":
        """Build the lab and leave it running (for `lab-runner up`); on any failure nothing remains.

        proxy_mode overrides the lab file's kubeProxy.mode (nftables needs an nftables profile:
        the caller picks it, see cli.lifecycle.up)."""
        model = spec if isinstance(spec, Lab) else lab_file.load(spec)
        model = _with_overrides(model, profile, cluster_cidr, proxy_mode)
        check_proxy_mode(model)
        run = RunRecord(run_id=new_run_id(), lab_id=model.id, lab_source=model.source,
                        iptables=iptables_variant, profile=model.profile,
                        proxy_mode=model.proxy_mode, cluster_cidr=cluster_cidr,
                        transient=transient)
        lab = cls(model, run)
        try:
            lab._write_tool_shims()
            lab.backend.create(model, run)
            if rules:
                lab.install_rules()
            run.state = "up"
            run.save()
        except BaseException:  # Ctrl-C and SIGTERM included: leave nothing half-made
            lab.down()
            raise
        return lab

    @classmethod
    def attach(cls, which: str | None = None) -> "LiveLab":
        """The running lab named by run id or lab id (or the only one), from another process."""
        run = find_run(which)
        model = _with_overrides(lab_file.load(run.lab_source), run.profile, run.cluster_cidr,
                                run.proxy_mode)
        if run.pods is not None:
            model = model.with_changes(pods=deployments.pods_from_data(run.pods))
        return cls(model, run)

    def down(self) -> list[str]:
        problems = self.backend.destroy(self.run)
        shutil.rmtree(self.run.path.parent, ignore_errors=True)
        try:
            self.run.path.parent.parent.rmdir()  # the state root, once no run is left in it
        except OSError:
            pass
        return problems

    # -- rules -----------------------------------------------------------------------------
    @property
    def nftables(self) -> bool:
        """kube-proxy runs in nftables mode here: `table ip kube-proxy`, no KUBE-* iptables chains."""
        return self.model.proxy_mode == "nftables"

    def rendered_rules(self, *, base_jumps: bool = True, node: str | None = None,
                       replace: bool = False) -> str:
        """kube-proxy's document as `node`'s kube-proxy writes it (default the first node): with
        traffic policy Local, which endpoints are local differs from node to node. In nftables
        mode the `nft -f` document (replace=True: one that replaces the table a node holds)."""
        if self.nftables:
            from lab_runner.ruleset.nft_render import render as nft_render

            return nft_render(self.model, self.model.profile, node=node, replace=replace)
        from lab_runner.ruleset.render import render  # the renderer is pure and heavy-free

        return render(self.model, self.model.profile, base_jumps=base_jumps, node=node)

    def install_rules(self) -> None:
        """The chain set on every node, applied once, atomically (kube-proxy runs on every node).

        In nftables mode the node gets `table ip kube-proxy` alone: the kit's nodes hold no
        iptables state besides kube-proxy's own, so nothing of iptables is written. The node is
        new, so the table goes in as a few transactions (nft_load: the kernel's cost of an
        anonymous verdict map grows with its transaction; 10,000 Services x 10 endpoints load in
        ~15 s instead of ~112 s as one); a failure part-way fails `up`, which tears down."""
        for node in self.model.nodes:
            if self.nftables:
                nft_load.load(self.runner, self.place(node.name),
                              self.rendered_rules(node=node.name))
                continue
            if self.model.nfacct:
                # kube-proxy creates its nfacct counters before writing rules that count into
                # them: iptables-restore refuses `-m nfacct` naming a counter that does not exist.
                self.runner.run([sys.executable, "-m", "lab_runner.nfacct"], self.place(node.name))
            # The node is new and the document holds all of its tables: no --noflush, which
            # iptables-nft makes roughly quadratic (1,000 services: 9 s instead of 0.8 s).
            iptables.restore(self.runner, self.place(node.name),
                             self.rendered_rules(node=node.name), self.run.iptables, noflush=False)

    def restore(self, document: str, node: str | None = None, *, noflush: bool = True) -> None:
        """Apply a document to a node: iptables-restore text, or in nftables mode `nft -f` text."""
        if self.nftables:
            nft_apply.apply(self.runner, self.place(node or "node"), document)
            return
        iptables.restore(self.runner, self.place(node or "node"), document, self.run.iptables,
                         noflush=noflush)

    def save(self, node: str | None = None, *, table: str | None = None) -> str:
        """The node's kube-proxy rules as the kernel lists them: iptables-save (with counters,
        `table` one of its tables), or in nftables mode `nft list table ip kube-proxy`."""
        if self.nftables:
            if table is not None:
                raise LabError(f"run {self.run.run_id} runs kube-proxy in nftables mode: its "
                               f"rules are in `table ip kube-proxy`, not the iptables {table} "
                               "table")
            return nft_apply.save(self.runner, self.place(node or "node"))
        return self.iptables_save(node, table=table)

    def iptables_save(self, node: str | None = None, *, table: str | None = None) -> str:
        """iptables-save -c of a node, whatever the mode (in nftables mode: no KUBE-* chains)."""
        return iptables.save(self.runner, self.place(node or "node"), self.run.iptables, table=table)

    def resync(self) -> None:
        """Re-render from the current model and apply it atomically, as a kube-proxy sync does.

        Chains of endpoints that are gone are flushed and deleted in the same iptables-restore
        (nftables mode: the one `nft -f` replaces the whole table), so there is never a moment
        with a jump to a missing chain.
        """
        from lab_runner.ruleset.names import is_per_service_chain
        from lab_runner.ruleset.parse import parse

        for node in self.model.nodes:
            if self.nftables:
                nft_apply.apply(self.runner, self.place(node.name),
                                self.rendered_rules(node=node.name, replace=True))
                continue
            document = self.rendered_rules(base_jumps=False, node=node.name)
            current = parse(self.save(node.name, table="nat"), "<node>",
                            check=False).table("nat").chains
            stale = [c for c in current if is_per_service_chain(c) and f":{c} " not in document]
            iptables.restore(self.runner, self.place(node.name),
                             _with_deleted_chains(document, stale), self.run.iptables)

    def _changed_pods(self, model: Lab) -> None:
        self.model = model
        self.run.pods = deployments.pods_to_data(model.pods)
        self.run.save()

    def scale(self, deployment: str, replicas: int) -> tuple[list[str], list[str]]:
        """Scale a deployment on the live lab: new pods first, then rules, then old pods go."""
        as_defined = _with_overrides(lab_file.load(self.run.lab_source), None, None) \
            if self.run.lab_source else self.model
        model, added, removed = deployments.scaled(self.model, deployment, replicas,
                                                   templates=as_defined)
        grown = self.model.with_changes(pods=self.model.pods + tuple(added))
        for pod in added:
            self.backend.add_pod(grown, self.run, pod)
        self._changed_pods(model)
        self.resync()
        for name in removed:
            self.backend.remove_pod(self.run, name)
        return [p.name for p in added], removed

    def set_ready(self, pod: str, ready: bool) -> str:
        model = deployments.with_readiness(self.model, pod, ready)
        self._changed_pods(model)
        self.resync()
        return deployments.find_pod(model, pod).name

    def terminate(self, pod: str, serving: bool = True) -> str:
        """Start deleting a pod: it keeps running, terminating (serving or not) in its slice."""
        model = deployments.with_termination(self.model, pod, serving)
        self._changed_pods(model)
        self.resync()
        return deployments.find_pod(model, pod).name

    def recreate(self, pod: str) -> tuple[str, str]:
        """Delete a pod; its Deployment starts a new one with a new name and a new address."""
        model, old, new = deployments.recreated(self.model, pod)
        self.backend.add_pod(model, self.run, new)
        self._changed_pods(model)
        self.resync()
        self.backend.remove_pod(self.run, old.name)
        return old.name, new.name

    # -- hosts -----------------------------------------------------------------------------
    def hosts(self) -> dict[str, str]:
        """Every host name a user may give, with what it is."""
        names = {n.name: "node" for n in self.model.nodes}
        names.update({c.name: "client" for c in self.model.clients})
        names.update({p.name: "pod" for p in self.model.pods if p.name in self.run.pod_pids})
        return names

    def resolve(self, host: str) -> tuple[str, str]:
        """(kind, full name) for `node`, `client`, a node/pod/client name or a pod's unique suffix."""
        model = self.model
        if host == "node" and model.nodes:
            return "node", model.nodes[0].name
        if host == "client" and model.clients:
            return "client", model.clients[0].name
        known = self.hosts()
        if host in known:
            return known[host], host
        pods = sorted(n for n, kind in known.items() if kind == "pod")
        matches = [n for n in pods if n.endswith("-" + host)]
        if len(matches) == 1:
            return "pod", matches[0]
        choices = ", ".join(["node", "client"] + sorted(known))
        example = f" (a pod may be named by its last part, e.g. {pods[0].rsplit('-', 1)[-1]})" \
            if pods else ""
        raise LabError(f"no host {host!r} in run {self.run.run_id} ({model.id}); the hosts are: "
                       f"{choices}{example}")

    def place(self, host: str) -> Place:
        kind, name = self.resolve(host)
        run_id = self.run.run_id
        if kind == "node":
            return Place(node_ns(run_id, name), uts_pid=self._uts_holder(name))
        if kind == "client":
            return Place(client_ns(run_id, name))
        return Place(pod_ns(run_id, name), uts_pid=self.run.pod_pids.get(name))

    def _uts_holder(self, node: str) -> int | None:
        """The live process holding the node's own UTS namespace (none in a docker run, whose
        container is the node, or in a run made before nodes had one)."""
        return next((p.pid for p in self.run.processes
                     if p.role == uts_role(node) and p.alive()), None)

    def exec(self, host: str, argv: Sequence[str], *, check: bool = False,
             input: str | None = None, timeout: float = 60) -> CommandResult:
        """Run a command in a host; `iptables` there is the lab's variant, `sudo` a no-op (we are root)."""
        return self.runner.run(self.command_in(host, argv), self.place(host), input=input,
                               check=check, timeout=timeout)

    def command_in(self, host: str, argv: Sequence[str]) -> list[str]:
        return ["env", f"PATH={self.shim_dir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin')}",
                *argv]

    @property
    def shim_dir(self) -> Path:
        return self.run.path.parent / "bin"

    def _write_tool_shims(self) -> None:
        """`iptables`, `iptables-save`, `iptables-restore` point at the run's variant; `sudo` is a no-op.

        The seed's commands start with `sudo`; inside a lab host the student is already root.
        """
        private_dir(self.shim_dir)  # root runs these: 0700 and root's, whatever the umask
        write_file(self.shim_dir / "sudo", '#!/bin/sh\n# in a lab host you are already root\n'
                   'exec "$@"\n', 0o755)
        for name in ("iptables-save", "iptables-restore"):
            target = shutil.which(iptables.tool(self.run.iptables, name))
            if target:
                link = self.shim_dir / name
                link.unlink(missing_ok=True)
                link.symlink_to(target)
        real = shutil.which(iptables.tool(self.run.iptables, "iptables"))
        if real:
            package_root = Path(__file__).resolve().parent.parent
            write_file(self.shim_dir / "iptables",
                       f"#!/bin/sh\n# the lab's iptables ({self.run.iptables}); see "
                       f"lab_runner/listing_fix.py\nPYTHONPATH={package_root} exec "
                       f"{sys.executable} -m lab_runner.listing_fix {real} \"$@\"\n", 0o755)


def _with_deleted_chains(document: str, stale: list[str]) -> str:
    """Add `:CHAIN` (flush) and `-X CHAIN` (delete) for stale chains to the nat section."""
    if not stale:
        return document
    head, _, rest = document.partition("*nat\n")
    body, _, tail = rest.partition("COMMIT\n")
    declare = "".join(f":{c} - [0:0]\n" for c in stale)
    delete = "".join(f"-X {c}\n" for c in stale)
    return f"{head}*nat\n{declare}{body}{delete}COMMIT\n{tail}"


def check_proxy_mode(model: Lab) -> None:
    """nftables mode only with a profile the nftables renderer has (as lab_file checks a file)."""
    from lab_runner.lab_file import NFTABLES_PROFILES

    if model.proxy_mode == "nftables" and model.profile not in NFTABLES_PROFILES:
        raise LabError(f"nftables mode needs profile {' or '.join(NFTABLES_PROFILES)} (GA from "
                       f"Kubernetes v1.33); {model.id} would run with profile {model.profile}")


def _with_overrides(model: Lab, profile: str | None, cluster_cidr: str | None,
                    proxy_mode: str | None = None) -> Lab:
    changes = {}
    if profile:
        changes["profile"] = profile
    if proxy_mode:
        changes["proxy_mode"] = proxy_mode
    if cluster_cidr:
        changes["cluster_cidr"] = ipaddress.IPv4Network(cluster_cidr)
    return model.with_changes(**changes) if changes else model
