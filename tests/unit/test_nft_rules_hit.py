"""Which nftables rules new connections met, without root: the kernel's trace of many first
packets read one path per trace id, and static grading's rules_hit from nft_tracer (the live
answer is compared with it in tests/integration/test_lab7.py)."""

from __future__ import annotations

from pathlib import Path

from lab_runner.evidence import nft_trace
from lab_runner.evidence.probing import Target
from lab_runner.grading import exercise as exercises
from lab_runner.grading import nft_submission
from lab_runner.grading.nft_sandbox import NftStaticSandbox

ROOT = Path(__file__).resolve().parents[2]
SERVICE = Target("10.104.5.205", 8080, "tcp")
ANSWERS = ROOT / "fixtures" / "submissions" / "lab-7"


def events(trace_id: str, endpoint: str) -> str:
    prefix = f"trace id {trace_id} ip kube-proxy"
    return (f"{prefix} nat-prerouting rule jump services (verdict jump services)\n"
            f"{prefix} services rule ip daddr . meta l4proto . th dport vmap @service-ips "
            "(verdict goto svc)\n"
            f"{prefix} svc rule numgen random mod 2 vmap {{ 0 : goto a, 1 : goto b }} "
            f"(verdict goto {endpoint})\n"
            f"{prefix} {endpoint} rule meta l4proto tcp dnat to 172.17.0.5:80 (verdict accept)\n")


def test_every_traced_packet_is_a_path_of_its_own_in_the_order_they_began():
    # Events of two packets, interleaved as the monitor may print them (an id is one packet).
    text = events("aaaa0001", "a") + events("bbbb0002", "b") + events("aaaa0001", "x")
    paths = nft_trace.parse_all(text)
    assert [p.chains()[-1] for p in paths] == ["x", "b"]
    assert [len(p.hops) for p in paths] == [8, 4]
    assert nft_trace.parse(text).chains() == paths[0].chains()


def hits(exercise: int, path: Path, source: str = "client") -> set:
    ex = exercises.find("lab-7", exercise)
    return NftStaticSandbox(ex, nft_submission.read(path, ex)).rules_hit(source, SERVICE)


def test_static_rules_hit_are_every_rule_on_a_way_with_a_chance():
    right = hits(1, ROOT / "labs" / "lab-7-nftables" / "solutions" / "ex1-numgen.nft")
    dnats = {h.chain for h in right if "dnat to" in h.rule.text}
    assert len(dnats) == 4 and all(c.startswith("endpoint-") for c in dnats)
    assert any(h.chain == "mark-for-masquerade" for h in right)
    three = hits(1, ANSWERS / "ex1-three-endpoints.lose-8.nft")
    assert len({h.chain for h in three if "dnat to" in h.rule.text}) == 3


def test_a_hit_is_the_rule_whatever_its_spelling():
    goto = hits(2, ROOT / "labs" / "lab-7-nftables" / "solutions" / "ex2-service-ips.nft")
    number = hits(2, ANSWERS / "ex2-protocol-number.lose-0.nft")
    assert goto == number  # the map element differs (tcp, 6), the rules met do not
    wrong = hits(2, ANSWERS / "ex2-straight-to-one-endpoint.lose-5.nft")
    assert not any(h.chain.startswith("service-5") for h in wrong)
    assert not any(h.chain == "mark-for-masquerade" for h in wrong)  # the client: unmarked
