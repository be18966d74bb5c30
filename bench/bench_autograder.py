"""Benchmark: a whole class through the Gradescope bundle, one container per submission, 2 at a time.

    python bench/bench_autograder.py [N]        (default 300)

Builds the autograder image as Gradescope would (tests/integration/test_autograder_platforms.py: the zip
unpacked into a bare Debian container, setup.sh, committed), generates N submissions of lab-3
exercise 3 (right answers spelled several ways, and wrong ones of several kinds, with a wrong
file name and an empty file among them), and runs run_autograder for each in its own container
with Docker's default capabilities and no network, as Gradescope does. Correct means: every
container's score equals what `lab-runner grade --static` gives the same file on this machine,
and every right answer has full marks. Needs root and dockerd (or DOCKER_HOST), and KPLAB_BASE or
debootstrap; prints why it skips otherwise.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout

import pytest  # noqa: E402

from tests.integration.test_autograder_platforms import (DEFAULT_HOST, Docker, base_image,  # noqa: E402
                                               bundle, gradescope_image, run_gradescope)

COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 300
JOBS = 2
SVC = "KUBE-SVC-Q7IJ732UBZY4AJKA"
SEPS = ["KUBE-SEP-TWZJG7ZWZYI5EC7J", "KUBE-SEP-LCP7KINQA756A5JS", "KUBE-SEP-XCVGJ5SWPGOUASPD",
        "KUBE-SEP-56377YKM7VKGGV6C"]


def rules(probabilities: list[str | None], comment: bool = False, order=SEPS) -> str:
    note = "-m comment --comment stateful-apps/my-app:http-svc " if comment else ""
    lines = [f"-A {SVC} {note}" + (f"-m statistic --mode random --probability {p} " if p else "")
             + f"-j {sep}" for p, sep in zip(probabilities, order)]
    return "*nat\n" + "\n".join(lines) + "\nCOMMIT\n"


# (kind, right?, text): a class's spread of answers, right ones written differently.
KINDS = [
    ("ten-decimals", True, lambda: rules(["0.2500000000", "0.3333333333", "0.5000000000", None], True)),
    ("short-decimals", True, lambda: rules(["0.25", "0.33333", "0.5", None])),
    ("other-order", True, lambda: rules(["0.25", "0.3333333333", "0.5", None], order=SEPS[::-1])),
    ("all-quarter", False, lambda: rules(["0.25", "0.25", "0.25", None])),
    ("reversed", False, lambda: rules(["0.5", "0.3333333333", "0.25", None])),
    ("one-rule", False, lambda: rules([None])),
    ("three-rules", False, lambda: rules(["0.3333333333", "0.5", None])),
    ("empty", False, lambda: ""),
    ("wrong-name", False, None),
]


def make_class(root: Path, count: int) -> list[tuple[Path, str, bool]]:
    """count submission directories (one per student) with the kind each was made as."""
    rng = random.Random(18)
    made = []
    for i in range(count):
        kind, right, text = KINDS[i % len(KINDS)] if i < len(KINDS) else rng.choice(KINDS)
        student = root / f"student-{i:03d}"
        student.mkdir(parents=True)
        name = "answer.txt" if text is None else rng.choice(["ex3.rules", "ex3-random-selection.rules"])
        (student / name).write_text(rules([None]) if text is None else text())
        made.append((student, kind, right))
    return made


@contextlib.contextmanager
def engine():
    """DOCKER_HOST's engine when it answers, else a private one (test_docker.PrivateEngine),
    stopped with its files removed at the end; what this bench made is removed either way."""
    docker, private = Docker(os.environ.get("DOCKER_HOST", DEFAULT_HOST)), None
    if not docker.answers():
        from tests.integration.test_docker import PrivateEngine

        private = PrivateEngine()
        private.start()
        docker = Docker(private.host)
    try:
        yield docker
    finally:
        docker.cleanup()
        if private:
            private.stop()


def expected_score(student: Path) -> float:
    """What static grading on this machine gives the file (0 when nothing is found)."""
    from lab_runner.grading.grade import grade

    files = [p for p in student.iterdir() if p.name in ("ex3.rules", "ex3-random-selection.rules")]
    return grade("lab-3", "3", files[0], "static").score if files else 0.0


def main() -> int:
    try:
        with engine() as docker:
            work = Path(tempfile.mkdtemp(prefix="kplab-bench-ag-"))
            started = time.monotonic()
            base = base_image(docker)
            out = bundle("gradescope", work / "bundle", "3")
            image = f"{docker.name('gradescope')}:set-up"
            gradescope_image(docker, base, out / "autograder.zip", image)
            setup = time.monotonic() - started
            students = make_class(work / "class", COUNT)
            expected = {s: expected_score(s) for s, _, _ in students}

            def one(entry):
                student, kind, right = entry
                begun = time.monotonic()
                doc = run_gradescope(docker, image, student, work / "results" / student.name)
                return student, kind, right, doc, time.monotonic() - begun

            begun = time.monotonic()
            with ThreadPoolExecutor(JOBS) as pool:
                graded = list(pool.map(one, students))
            wall = time.monotonic() - begun
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        print(f"autograder: skipped ({exc})")
        return 0
    wrong = [(s.name, kind, doc["score"], expected[s]) for s, kind, right, doc, _ in graded
             if doc["score"] != expected[s] or (right and doc["score"] != 10)
             or doc["extra_data"]["mode"] != "static"]
    each = [seconds for *_, seconds in graded]
    print(f"autograder: setup (bundle, image from a bare Debian: setup.sh) {setup:.0f} s")
    print(f"autograder: {COUNT} submissions of lab-3 exercise 3 through run_autograder, one "
          f"container each, {JOBS} at a time: {wall:.0f} s ({wall / COUNT:.2f} s a submission, "
          f"{COUNT / wall * 60:.0f} a minute); one container: median {statistics.median(each):.2f} s, "
          f"max {max(each):.2f} s")
    print(f"autograder: correct {COUNT - len(wrong)}/{COUNT} (the container's score equals static "
          f"grading here; right answers have 10/10; mode static)")
    for row in wrong[:10]:
        print(f"autograder: differs: {row}")
    shutil.rmtree(work, ignore_errors=True)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
