"""Issue 20's live tier, as root: the kept regression cases of labs 2, 3 and 4
(fixtures/differential/, in `make test`) and, marked slow, generated student-like edits of lab
3's nat table, each applied to one live lab-3 node, judged by iptables-restore, the kit's intake
and the tracer, and by real connections from every caller class (the client, each pod, hairpins
included, and the node). Labs 2 and 4's generated edits: test_differential_labs.py.

For each variant (tests/strategies/edits.py; the harness is tests/strategies/kernel.py):
- iptables-restore and the intake accept or refuse it alike (the whole nat table is restored
  without --noflush, so each variant replaces the one before);
- if the tracer models it, from each caller N new connections (first-packet fates: 0.5 s each)
  are compared with the tracer's exact prediction, read as what a caller can observe (which pod
  answered and the source it saw, or no answer). A fate seen that the tracer gives no chance,
  or counts whose binomial p-value is below 1e-6, is a disagreement; Hypothesis shrinks it to
  the smallest list of edits.

Environment: KPLAB_DIFF_EXAMPLES (default 25), KPLAB_DIFF_MINUTES (a time budget: examples after
it pass untried), KPLAB_DIFF_SEED, KPLAB_DIFF_LOG (a JSON-lines file: one line per variant, for
the figures of the closing note: `python -m tests.strategies.kernel LOG`), KPLAB_DIFF_COLLECT=1
(log disagreements and go on, for a survey run, instead of failing and shrinking),
KPLAB_DIFF_CONNECTIONS (per caller, default 16).
"""

from __future__ import annotations

import subprocess
import time

import pytest
from hypothesis import example, given, seed

from lab_runner.grading.submission import as_iptables_restore
from lab_runner.ruleset.tracer import trace
from tests.strategies import kernel
from tests.strategies.edits import Document, NewRule, dnat_to, edit_lists, edited, nat_table
from tests.strategies.kernel import labs  # noqa: F401 (a fixture)
from tests.strategies.observable import Callers, cases

pytestmark = pytest.mark.needs_root


@pytest.fixture(scope="module")
def lab(labs):
    return labs.get("lab-3")


@pytest.fixture(scope="module")
def base(lab) -> Document:
    return Document.of(nat_table(lab.rendered_rules()))


def test_the_unedited_table_agrees_from_every_caller(lab, base):
    assert kernel.kernel_refuses(lab, base.text) is None
    ruleset = as_iptables_restore(base.text, "lab-3.rules")
    entry: dict = {}
    assert kernel.compare(lab, Callers(lab.model), ruleset, entry) is None, entry


@pytest.mark.parametrize("case", [
    pytest.param(c, id=c.name, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)]
                 if c.xfail else []) for c in cases()])
def test_a_kept_variant_does_on_the_kernel_what_it_did(labs, case):
    """fixtures/differential/: iptables-restore loads it or refuses it as recorded, and each
    caller's connections show the recorded fates (which the static test holds the tracer to)."""
    live = labs.get(case.lab, case.exercise)
    refused = kernel.kernel_refuses(live, case.text)
    assert (refused is None) == case.loads, refused
    if case.loads:
        # sessionAffinity's recent lists are emptied before each connection: first-packet shares
        measured = kernel.measure(live, case.expect, case.callers().target,
                                  forget="-m recent" in case.text)
        assert not any(problem for problem, _, _ in measured.values()), measured


# A listener on the node: prints the local address of each connection it accepts.
LISTENER = """import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80)); s.listen(8); s.settimeout(10)
print("ready", flush=True)
while True:
    c, peer = s.accept(); print("%s:%d" % c.getsockname(), flush=True); c.close()
"""


def test_redirect_lands_where_the_tracer_says(lab, base):
    """REDIRECT as the kernel does it (the intake still refuses it, semantics.unsupported): with
    something listening on the node's port 80, the client's connection is accepted at eth0's
    address, a pod's at the bridge's, the node's own at 127.0.0.1, as the tracer says."""
    text = base.text.replace("COMMIT\n", "-I KUBE-SERVICES 1 -p tcp -j REDIRECT --to-ports 80\n"
                             "COMMIT\n")
    assert kernel.kernel_refuses(lab, text) is None
    callers = Callers(lab.model)
    ruleset = as_iptables_restore(text, "redirect.rules")
    chosen = ["client", next(c for c in callers.callers if c not in ("client", "node")), "node"]
    listener = lab.runner.spawn(["timeout", "15", "python3", "-c", LISTENER], lab.place("node"),
                                stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "ready"
        accepted = []
        for caller in chosen:
            lab.exec(caller, ["python3", "-c", "import socket; socket.create_connection("
                              f"('{callers.target.ip}', {callers.target.port}), 2).close()"],
                     check=True)
            accepted.append(listener.stdout.readline().strip())
    finally:
        listener.kill()
        listener.wait()
        kernel.kernel_refuses(lab, base.text)
    predicted = ["%s:%d" % trace(ruleset, callers.packet(c)).outcomes[0].dnat for c in chosen]
    assert accepted == predicted == ["192.168.49.2:80", "172.17.0.1:80", "127.0.0.1:80"]


@pytest.mark.slow
@seed(kernel.SEED)
@kernel.SURVEY
@given(edits=edit_lists())
# What issue 20 item 3 added to the tracer, tried every run (rule 8 is the first endpoint's
# DNAT, rule 16 the Service's rule in KUBE-SERVICES).
@example(edits=[dnat_to(8, "172.17.0.2-172.17.0.7:80", False)])  # nf_nat's hash per caller
@example(edits=[dnat_to(8, "172.17.0.2:80-81", False)])  # 8080 is not in 80-81: port 80
@example(edits=[dnat_to(8, "172.17.0.5:80", True)])  # --to-destination=
@example(edits=[NewRule(16, "-p tcp -j REDIRECT --to-ports 80")])
@example(edits=[NewRule(16, "-m addrtype --dst-type UNICAST -j RETURN")])
@example(edits=[NewRule(16, "-m addrtype ! --dst-type UNICAST -j RETURN")])
def test_the_kernel_does_what_the_tracer_predicts(lab, base, edits):
    text = edited(base, edits).text
    if kernel.skipped(text):
        return
    entry: dict = {"lab": "lab-3", "edits": repr(edits), "at": time.time()}
    began = time.monotonic()
    try:
        problem = kernel.judge(lab, Callers(lab.model), text, entry)
    finally:
        entry["seconds"] = round(time.monotonic() - began, 2)
        kernel.log(entry)
        kernel.kernel_refuses(lab, base.text)
    if problem and not kernel.COLLECT:
        pytest.fail(f"{problem}\n{edits}\n{text}")
