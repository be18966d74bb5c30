"""Lab 7's grading in nftables mode, static (no root): the corpus of answers in
fixtures/submissions/lab-7 (`ex<N>-<what>.lose-<P>.nft`, line 1 `# fails: check, …`) scores what
its name declares, the reference solutions score full marks, and hostile or broken submissions
are refused before any lab is built, naming the line. tests/integration/test_lab7.py grades the
same files live.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lab_runner.errors import LabFileError, SubmissionError
from lab_runner.grading import exercise as exercises
from lab_runner.grading import nft_submission
from lab_runner.grading.grade import grade

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))  # the corpus' naming rule, shared
from wrong_answers import declared  # noqa: E402
CORPUS = sorted((ROOT / "fixtures" / "submissions" / "lab-7").glob("*.nft"))
SOLUTIONS = sorted((ROOT / "labs" / "lab-7-nftables" / "solutions").glob("ex*"))
SVC = "service-54NX2MGN-stateful-apps/my-app/tcp/http-svc"
E2 = "endpoint-TYI6JCM2-stateful-apps/my-app/tcp/http-svc__172.17.0.2/80"


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_static_grade_is_the_declared_one(path):
    number, lose, fails = declared(path)
    result = grade("lab-7", number, path, "static")
    failed = {c.id for c in result.checks if not c.passed}
    report = "\n".join(f"  {c.status} {c.id}: {c.output}" for c in result.checks)
    assert not result.error and (result.max_score - result.score, failed) == (lose, fails), \
        f"{path.name}\n{result.error}\n{report}"


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_reference_solution_scores_full_marks_statically(path):
    result = grade("lab-7", path.name[2], path, "static")
    assert result.score == result.max_score > 0 and not result.error, result.to_dict()["checks"]


def test_every_exercise_has_a_solution_and_right_and_wrong_answers():
    for ex in exercises.all_exercises("lab-7"):
        assert ex.format == "nft" and (ex.directory.parent.parent / "solutions" /
                                       f"{ex.slug}.nft").is_file()
        mine = [p for p in CORPUS if p.name.startswith(f"ex{ex.number}-")]
        right = [p for p in mine if ".lose-0." in p.name]
        assert len(right) >= 2 and len(mine) - len(right) >= 6, (ex.number, len(right), len(mine))


def test_a_wrong_answer_is_told_what_differs_in_its_own_terms():
    result = grade("lab-7", 1, CORPUS_FILE("ex1-inserted-before-mark.lose-2.nft"), "static")
    caller = next(c for c in result.checks if c.id == "every-caller")
    assert "the client (192.168.49.1)" in caller.output and "masqueraded" in caller.output, \
        caller.output


def CORPUS_FILE(name: str) -> Path:
    return ROOT / "fixtures" / "submissions" / "lab-7" / name


HOSTILE = {
    "flush ruleset": (1, "flush ruleset\n", "never flush, delete or replace"),
    "include": (1, 'include "/etc/nftables.conf"\n', "`include` is not taken"),
    "delete its table": (1, "delete table ip kube-proxy\n", "never flush, delete or replace"),
    "another table": (1, "add rule ip nat PREROUTING accept\n", "table ip nat is not part"),
    "another family": (1, f"add rule inet kube-proxy {SVC} accept\n", "table inet kube-proxy"),
    "a table of its own": (1, "add table ip mine\n", "`add table` is not taken"),
    "a second command after ;": (1, f"add rule ip kube-proxy {SVC} accept; flush ruleset\n",
                                 "several commands on one line"),
    "the listing form": (1, "table ip kube-proxy {\n}\n", "listing form"),
    "a chain not opened": (1, f"add rule ip kube-proxy {E2} accept\n", "is not part of this "
                                                                        "exercise"),
    "a map not opened": (2, f"add element ip kube-proxy service-nodeports {{ tcp . 30000 : goto "
                            f"{SVC} }}\n", "map 'service-nodeports' is not part"),
    "a base chain": (1, "add chain ip kube-proxy service-AAAAAAAA-x { type filter hook input "
                        "priority 0 ; policy drop ; }\n", "a chain with options"),
    "a variable": (1, "define X = 1\n", "`define` is not taken"),
    "a jump nowhere": (1, f"# first\nadd rule ip kube-proxy {SVC} goto service-AAAAAAAA-no\n",
                       "line 2: goes to chain 'service-AAAAAAAA-no', which"),
    "a loop": (1, f"add chain ip kube-proxy service-AAAAAAAA-loop\nadd rule ip kube-proxy "
                  f"service-AAAAAAAA-loop jump {SVC}\nadd rule ip kube-proxy {SVC} ip saddr "
                  "10.0.0.1 jump service-AAAAAAAA-loop\n", "line 3: chain"),
    "a syntax error": (1, f"\n\nadd rule ip kube-proxy {SVC} numgen random mod vmap {{ }}\n",
                       "line 3: 'vmap' is not a number"),
    "a map update": (1, f"add rule ip kube-proxy {SVC} update @service-ips {{ ip daddr . meta "
                        f"l4proto . th dport : goto {SVC} }}\n", "cannot model `update"),
    "a short key": (2, f"add element ip kube-proxy service-ips {{ 10.104.5.205 . tcp : goto "
                       f"{SVC} }}\n", "does not fit"),
    "a numgen key that is no number": (1, f"add rule ip kube-proxy {SVC} numgen random mod 1 "
                                          f"vmap {{ zero : goto {E2} }}\n", "numgen draws numbers"),
    "no address": (1, f"add rule ip kube-proxy {SVC} ip saddr 300.1.1.1 accept\n",
                   "`300.1.1.1` is not an IPv4 address"),
    "a port out of range": (1, f"add rule ip kube-proxy {SVC} th dport 70000 accept\n",
                            "not a port"),
    "a DNAT port without a protocol": (1, f"add rule ip kube-proxy {SVC} dnat to 172.17.0.2:80\n",
                                       "needs the protocol matched first"),
    "one numgen key twice": (1, f"add rule ip kube-proxy {SVC} numgen random mod 2 vmap {{ 0 : "
                                f"goto {E2}, 0 : goto {SVC} }}\n", "given a second, different"),
    "a map key given another value": (2, f"add element ip kube-proxy service-ips {{ 10.104.5.205 "
                                         f". tcp . 8080 : goto {SVC} }}\nadd element ip kube-proxy "
                                         f"service-ips {{ 10.104.5.205 . tcp . 8080 : accept }}\n",
                                      "line 2: the key 10.104.5.205 . tcp . 8080 is given"),
    "a prefix in a map without intervals": (2, f"add element ip kube-proxy service-ips {{ "
                                               f"10.104.5.0/24 . tcp . 8080 : goto {SVC} }}\n",
                                            "has no `flags interval`"),
    "CRLF": (1, f"add rule ip kube-proxy {SVC} accept\r\n", "carriage return"),
    "a continued line": (1, f"add rule ip kube-proxy {SVC} \\\n accept\n", "continued"),
}


@pytest.mark.parametrize("exercise,text,says", HOSTILE.values(), ids=list(HOSTILE))
def test_hostile_or_broken_submissions_are_refused_naming_the_line(exercise, text, says):
    with pytest.raises(SubmissionError) as refused:
        nft_submission.from_bytes(text.encode(), "answer.nft", exercises.find("lab-7", exercise))
    assert str(refused.value).startswith("answer.nft, line ") and says in str(refused.value), \
        str(refused.value)


def test_a_refused_file_scores_zero_on_every_check_with_the_reason(tmp_path):
    path = tmp_path / "answer.nft"
    path.write_text("flush ruleset\n")
    result = grade("lab-7", 1, path, "static")
    assert result.score == 0 and "line 1" in result.error
    assert {c.status for c in result.checks} == {"error"}


def test_an_nft_exercise_must_belong_to_a_lab_in_nftables_mode(tmp_path):
    lab3 = ROOT / "labs" / "lab-3-clusterip"
    folder = tmp_path / "lab" / "exercises" / "ex1-x"
    folder.mkdir(parents=True)
    (tmp_path / "lab" / "lab.yaml").write_text((lab3 / "lab.yaml").read_text())
    (folder / "exercise.yaml").write_text("format: nft\nallowed: {nat: [KUBE-SVC-*]}\n")
    with pytest.raises(LabFileError, match="format: 'nft' does not fit a lab in kube-proxy's "
                                           "iptables mode"):
        exercises.load(folder)


def test_a_port_that_should_be_refused_is_said_so():
    result = grade("lab-7", 2, CORPUS_FILE("ex2-both-ports.lose-2.nft"), "static")
    other = next(c for c in result.checks if c.id == "other-destinations")
    assert "10.104.5.205:80/tcp reached my-app-" in other.output, other.output
    assert "Expected: refused" in other.output and "with  as source" not in other.output
