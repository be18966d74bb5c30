"""The live sampler counts DNAT rules however they are spelled, keyed as the tracer keys them
(issue 20 item 6; a raw-text read of `-j DNAT` missed `--jump DNAT` and `--to-destination=`)."""

from __future__ import annotations

import pytest

from lab_runner.evidence import sampling
from lab_runner.ruleset.counters import Snapshot

RULES = ("*nat\n:KUBE-SVC-X - [0:0]\n"
         "[{n}:0] -A PREROUTING -d 10.104.5.205/32 -p tcp -m tcp --dport 8080 -j KUBE-SVC-X\n"
         "[{n}:0] {rule}\nCOMMIT\n")


@pytest.mark.parametrize("rule,key", [
    ("-A KUBE-SVC-X -p tcp -j DNAT --to-destination 172.17.0.2", "172.17.0.2:8080"),
    ("-A KUBE-SVC-X -p tcp -j DNAT --to-destination 172.17.0.2:80", "172.17.0.2:80"),
    ("--append KUBE-SVC-X --protocol tcp --jump DNAT --to-destination=172.17.0.2:80",
     "172.17.0.2:80"),
    ("-A KUBE-SVC-X -p tcp -j DNAT --to 172.17.0.3:80", "172.17.0.3:80"),
])
def test_dnat_counts_keys_a_destination_as_the_tracer_does(rule, key):
    before, after = (Snapshot.parse(RULES.format(n=n, rule=rule)) for n in (0, 7))
    counted, chains = sampling.dnat_counts(before, after, 8080)
    assert counted == {key: 7} and chains == {key: "KUBE-SVC-X"}


def test_dnat_counts_leaves_other_targets_alone():
    rule = "-A KUBE-SVC-X -p tcp -j MARK --set-xmark 0x4000/0x4000"
    before, after = (Snapshot.parse(RULES.format(n=n, rule=rule)) for n in (0, 7))
    assert sampling.dnat_counts(before, after, 8080) == ({}, {})
