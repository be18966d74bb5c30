"""The grading corpus, static mode (no root): every answer in fixtures/submissions/lab-2..4 scores
what its name declares, and every reference solution scores full marks.

An answer is named `ex<N>-<what>.lose-<points>.rules` and starts with `# fails: check, …`
(empty for a right answer written differently: `lose-0`). The same files are graded live by
tests/integration/test_grading_fixtures.py (lab 3), test_lab2.py and test_lab4.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab_runner.grading import exercise as exercises
from lab_runner.grading.grade import grade

ROOT = Path(__file__).resolve().parents[2]
LABS = {"lab-2": "lab-2-nat", "lab-3": "lab-3-clusterip", "lab-4": "lab-4-endpoints",
        "lab-5": "lab-5-nodeport"}
NAME = re.compile(r"^ex(?P<ex>\w+?)-[\w-]+\.lose-(?P<lose>\d+)\.rules$")


def _corpus() -> list[tuple[str, Path]]:
    return [(lab, path) for lab in LABS
            for path in sorted((ROOT / "fixtures" / "submissions" / lab).glob("*.rules"))]


def _solutions() -> list[tuple[str, str, Path]]:
    out = []
    for lab, directory in LABS.items():
        for ex in exercises.all_exercises(lab):
            out.append((lab, ex.number, ROOT / "labs" / directory / "solutions" / f"{ex.slug}.rules"))
    return out


CORPUS = _corpus()


def _declared(path: Path) -> tuple[str, int, set[str]]:
    name = NAME.match(path.name)
    assert name, f"{path.name}: name it ex<N>-<what>.lose-<points>.rules"
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# fails:"), f"{path.name}: line 1 must be `# fails: check, …`"
    return name["ex"], int(name["lose"]), {c.strip() for c in first.split(":", 1)[1].split(",")
                                           if c.strip()}


@pytest.mark.parametrize("lab,path", CORPUS, ids=[f"{lab}/{p.name}" for lab, p in CORPUS])
def test_static_grade_is_the_declared_one(lab, path):
    number, lose, fails = _declared(path)
    result = grade(lab, number, path, "static")
    failed = {c.id for c in result.checks if not c.passed}
    report = "\n".join(f"  {c.status} {c.id}: {c.output}" for c in result.checks)
    assert (result.max_score - result.score, failed) == (lose, fails), f"{path.name}\n{report}"


@pytest.mark.parametrize("lab,number,path", _solutions(), ids=[f"{lab}/{p.name}" for lab, _, p in _solutions()])
def test_reference_solution_scores_full_marks_statically(lab, number, path):
    result = grade(lab, number, path, "static")
    assert result.score == result.max_score > 0 and not result.error, result.to_dict()["checks"]


def test_the_corpus_has_right_answers_written_differently_and_wrong_ones():
    right = [p for _, p in CORPUS if ".lose-0." in p.name]
    wrong = [p for _, p in CORPUS if ".lose-0." not in p.name]
    assert len(right) >= 20 and len(wrong) >= 60, (len(right), len(wrong))



# The wrong-answer classes of issue 12, each with answers that must lose points in both modes
# (the test above grades them statically; the integration tests grade them live).
CLASSES = {
    "only the client calls": ["lab-3/ex1-only-from-eth0.lose-2", "lab-3/ex3-only-from-eth0.lose-2",
                              "lab-3/ex4-only-from-eth0.lose-2", "lab-3/ex5-only-from-eth0.lose-4",
                              "lab-3/ex6-only-from-eth0.lose-2", "lab-3/ex2-outside-from-eth0.lose-3",
                              "lab-4/ex1-only-from-eth0.lose-2", "lab-2/ex1-prerouting-from-eth0.lose-2"],
    "marks only on clean packets": ["lab-3/ex2-set-mark.lose-1", "lab-3/ex2-xor-mark.lose-1",
                                    "lab-3/ex6-set-mark-rewritten.lose-3",
                                    "lab-3/ex6-xor-mark-rewritten.lose-3",
                                    "lab-3/ex5-xor-mark-directly.lose-4", "lab-2/ex3-set-mark.lose-1"],
    "hairpin invisible": ["lab-3/ex2-hairpin-in-one-endpoint.lose-3",
                          "lab-3/ex4-dnat-inserted-before-hairpin.lose-2",
                          "lab-3/ex4-chains-rewritten-without-hairpin.lose-3",
                          "lab-3/ex5-hairpin-in-one-endpoint.lose-2", "lab-3/ex6-sep-without-hairpin.lose-3",
                          "lab-4/ex1-new-chains-without-hairpin.lose-2"],
    "rule position": ["lab-3/ex3-inserted-before-masquerade.lose-2",
                      "lab-3/ex5-masquerade-after-endpoints.lose-4"],
    "which pod": ["lab-3/ex4-rotated-endpoints.lose-4", "lab-3/ex4-two-swapped.lose-4",
                  "lab-3/ex5-rotated-endpoints.lose-4"],
    "which CIDR": ["lab-3/ex5-bridge-cidr.lose-2", "lab-3/ex6-bridge-cidr.lose-2",
                   "lab-4/ex1-bridge-cidr.lose-3", "lab-3/ex6-masquerade-everyone.lose-2",
                   "lab-4/ex1-masquerade-everyone.lose-3"],
    "collateral": ["lab-3/ex6-no-nodeports-rule.lose-1", "lab-3/ex5-services-flushed.lose-1",
                   "lab-3/ex1-chain-declared-flushes-nodeports.lose-1"],
    "random selection": ["lab-3/ex3-round-robin.lose-4", "lab-3/ex3-one-decimal.lose-4",
                         "lab-2/ex2-round-robin.lose-4", "lab-4/ex2-round-robin.lose-3"],
    "right, written differently": ["lab-3/ex3-four-decimals.lose-0", "lab-3/ex1-long-options.lose-0",
                                   "lab-3/ex2-long-options.lose-0", "lab-3/ex3-extra-return.lose-0",
                                   "lab-3/ex2-hairpins-reordered.lose-0", "lab-4/ex1-four-decimals.lose-0"],
}


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_each_class_of_the_issue_has_answers(kind):
    for name in CLASSES[kind]:
        path = ROOT / "fixtures" / "submissions" / f"{name}.rules"
        assert path.is_file(), name
        assert (_declared(path)[1] == 0) == (kind == "right, written differently"), name
