"""Where a wiring submission is graded: its commands run in real namespaces or in the model."""

from __future__ import annotations

from lab_runner.errors import LabError
from lab_runner.grading import exercise as exercises
from lab_runner.grading.wiring.commands import WiringSubmission
from lab_runner.grading.wiring.spec import WiringSpec
from lab_runner.grading.wiring.world import Ran, Uncertain, simulate
from lab_runner.model import Lab


class WiringSandbox:
    """The questions a wiring check asks; answered live (real namespaces) or static (the model)."""

    mode = "?"

    def __init__(self, ex: exercises.Exercise, submission: WiringSubmission, spec: WiringSpec):
        self.exercise = ex
        self.submission = submission
        self.spec = spec
        self.model: Lab = ex.lab
        self.pod = spec.pod
        self.ran: list[Ran] = []
        self.evidence: dict = {}

    def caller_ip(self, host: str) -> str:
        node = self.model.node(self.pod.node)
        if host in ("node", node.name):
            return str(node.bridge_address.ip)  # the node reaches its pods from its bridge address
        address = self.model.caller_address(host)
        if address is None:
            raise LabError(f"no host {host!r} in {self.model.id}")
        return str(address)

    def failed_commands(self) -> list[Ran]:
        return [r for r in self.ran if not r.ok]

    def close(self) -> None:
        pass


class StaticWiringSandbox(WiringSandbox):
    mode = "static"

    def __init__(self, ex, submission, spec):
        super().__init__(ex, submission, spec)
        self.world, self.ran = simulate(ex.lab, spec, submission.commands)
        self.evidence["commands"] = [r.__dict__ for r in self.ran]

    def _ask(self, question, *args):
        from lab_runner.grading.sandbox import Undecidable

        if self.world.uncertain:
            raise Undecidable("the model does not follow this: " + "; ".join(self.world.uncertain))
        try:
            return question(*args)
        except Uncertain as exc:
            raise Undecidable(f"the model does not follow this: {exc}") from None

    def reach(self, source: str) -> tuple[bool, str | None, str]:
        """(answered, the source the pod saw, why not)."""
        ok, why = self._ask(self.world.reach, self.caller_ip(source))
        return ok, self.caller_ip(source) if ok else None, why

    def pod_interface(self) -> tuple[str | None, str]:
        return self._ask(self.world.pod_link_name)


class LiveWiringSandbox(WiringSandbox):
    mode = "live"

    def __init__(self, ex, submission, spec):
        super().__init__(ex, submission, spec)
        from lab_runner.backends.netns import node_ns, pod_ns
        from lab_runner.lab import LiveLab

        self.lab = LiveLab.start(ex.lab, transient=True)
        try:
            run = self.lab.run
            self.real = {"node": node_ns(run.run_id, spec.pod.node),
                         "pod": pod_ns(run.run_id, self.pod.name)}
            run.namespaces.append(self.real["pod"])  # recorded first: `down` removes it, always
            run.save()
            shown = {real: name for name, real in self.real.items()}
            for command in submission.commands:
                result = self.lab.runner.run(command.argv(self.real), check=False, timeout=20)
                message = (result.stderr or result.stdout).strip()
                for real, name in shown.items():
                    message = message.replace(real, name)
                self.ran.append(Ran(command.line, command.text, result.ok, message))
            self.evidence["commands"] = [r.__dict__ for r in self.ran]
            self.pod_started = self._start_pod()
        except BaseException:
            self.lab.down()
            raise

    def _start_pod(self) -> bool:
        """Start the pod's app in its namespace, as kubelet does once the network is set up."""
        from lab_runner.backends.netns import list_netns

        if self.real["pod"] not in list_netns():
            return False
        model = self.lab.model.with_changes(pods=self.lab.model.pods + (self.pod,))
        self.lab.backend.start_pods(model, self.lab.run, [self.pod])
        self.lab.model = model
        return True

    def close(self):
        self.lab.down()

    def reach(self, source: str) -> tuple[bool, str | None, str]:
        from lab_runner.evidence.probing import Target, probe

        if not self.pod_started:
            return False, None, "the pod's namespace was never created (`ip netns add pod`)"
        port = self.pod.ports[0].container_port
        report = probe(self.lab, source, Target(str(self.pod.ip), port, "tcp"), "http",
                       capture=False, counters=False, timeout=1.0)
        if report.answered and report.pod == self.pod.name:
            return True, report.pod_view.src, ""
        answer = report.answer.get("answer", "?")
        return False, None, f"no answer from {self.pod.ip}:{port} ({answer})"

    def pod_interface(self) -> tuple[str | None, str]:
        import json

        if not self.pod_started:
            return None, "the pod's namespace was never created (`ip netns add pod`)"
        pod_links = json.loads(self.lab.runner.run(["ip", "-n", self.real["pod"], "-j", "-d", "link",
                                                    "show"]).stdout or "[]")
        node_links = json.loads(self.lab.runner.run(["ip", "-n", self.real["node"], "-j", "link",
                                                     "show"]).stdout or "[]")
        node_index = {link["ifindex"]: link for link in node_links}
        paired = []
        for link in pod_links:
            kind = (link.get("linkinfo") or {}).get("info_kind")
            peer = node_index.get(link.get("link_index"))
            if kind == "veth" and "link_netnsid" in link and peer and \
                    peer.get("link_index") == link["ifindex"]:
                paired.append(link["ifname"])
        if paired:
            return ("eth0" if "eth0" in paired else paired[0]), ""
        names = ", ".join(link["ifname"] for link in pod_links if link["ifname"] != "lo") or "none"
        return None, (f"no interface of the pod is the end of a veth pair whose other end is in "
                      f"the node (the pod's interfaces besides lo: {names})")


def open_sandbox(mode: str, ex, submission, spec) -> WiringSandbox:
    if mode == "static":
        return StaticWiringSandbox(ex, submission, spec)
    if mode == "live":
        return LiveWiringSandbox(ex, submission, spec)
    raise LabError(f"unknown grading mode {mode!r}; choose live or static")
