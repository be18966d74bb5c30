"""Both modes grade a connection by its first packet (issue 20 item 2): live probes give up
before TCP's first retransmission, and both say alike what a retrying client may see."""

from __future__ import annotations

from types import SimpleNamespace

from lab_runner.evidence.probing import Target
from lab_runner.grading import exercise as exercises
from lab_runner.grading import sandbox as sandboxes
from lab_runner.grading.submission import from_bytes

SERVICE = Target("10.104.5.205", 8080, "tcp")


def test_live_probes_give_up_before_the_first_retransmission():
    assert sandboxes.FIRST_PACKET_TIMEOUT < sandboxes.TCP_FIRST_RETRANSMISSION
    assert sandboxes.NO_ANSWER_TIMEOUT < sandboxes.TCP_FIRST_RETRANSMISSION


def test_a_first_syn_to_an_address_nobody_holds_is_said_alike_in_both_modes():
    ex = exercises.find("lab-3", "4")
    text = b"*nat\n-A KUBE-SEP-TWZJG7ZWZYI5EC7J -p tcp -j DNAT --to-destination 172.17.0.99:80\nCOMMIT\n"
    static = sandboxes.StaticSandbox(ex, from_bytes(text, "gone.rules", ex))
    lost = [o for o in static.connect("client", SERVICE) if o.dnat == "172.17.0.99:80"]
    assert lost and not lost[0].answered
    live = sandboxes._answer(SimpleNamespace(answer={"answer": "timeout"}))
    assert sandboxes.RETRY_NOTE in lost[0].detail and sandboxes.RETRY_NOTE in live
    assert "it times out" in lost[0].detail and "it times out" in live


def test_a_pod_that_refuses_is_not_said_to_time_out():
    ex = exercises.find("lab-3", "4")
    text = b"*nat\n-A KUBE-SEP-TWZJG7ZWZYI5EC7J -p tcp -j DNAT --to-destination 172.17.0.2:81\nCOMMIT\n"
    static = sandboxes.StaticSandbox(ex, from_bytes(text, "port.rules", ex))
    refused = [o for o in static.connect("client", SERVICE) if o.dnat == "172.17.0.2:81"]
    assert refused and "refuses" in refused[0].detail and sandboxes.RETRY_NOTE not in refused[0].detail
