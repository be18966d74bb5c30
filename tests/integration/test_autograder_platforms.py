"""Each platform's bundle run under that platform's contract, in containers on a Docker engine.

- Gradescope: the zip unpacked into /autograder/source of a bare Debian container (standing in
  for Gradescope's Ubuntu base), setup.sh run there with the network, the result committed as
  the autograder image; run_autograder then runs per submission with Docker's DEFAULT
  capabilities and no network, the student's files in /autograder/submission; results.json is
  checked against Gradescope's documented format. The same image given CAP_NET_ADMIN grades live.
- PrairieLearn: the grader image built from the bundle's Dockerfile, run with /grade/student and
  /grade/results mounted, default capabilities, no network, as PrairieLearn runs it.
- GitHub Classroom: the workflow's steps as its job runs them, as a user `runner` with sudo: the
  install step with the network, then (new container with NET_ADMIN, no network) the grading
  step and every command grader, whose exit codes become points as the reporter sums them.

The engine is test_docker.py's `engine` fixture: DOCKER_HOST's, or a private one (no bridge, no
iptables, no ip_forward on the host) checked for leftovers and stopped at the end. The base image is KPLAB_BASE
(.ci/docker.sh makes it), or one made with debootstrap. Without an engine the tests skip with the
reason, unless KPLAB_REQUIRE_DOCKER=1 (CI), where that is a failure. Everything made here is named
kplab-<random id>-… and removed at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.integration.test_docker import engine  # noqa: E402,F401  (the fixture)
from tests.unit.test_autograder import gradescope_problems, leaks, prairielearn_problems  # noqa: E402

REQUIRED = os.environ.get("KPLAB_REQUIRE_DOCKER") == "1"
DEFAULT_HOST = "unix:///var/run/docker.sock"
SOLUTIONS = ROOT / "labs/lab-3-clusterip/solutions"
# What a live lab needs from a container (as the README's docker section), never --privileged.
LIVE = ["--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW", "--cap-add", "SYS_ADMIN",
        "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
        "--security-opt", "systempaths=unconfined"]
# Setup only: the engine's host network for apt and PyPI, the host's CAs for a re-signing proxy.
SETUP_NETWORK = ["--network", "host", "-v", "/etc/ssl/certs/ca-certificates.crt:/run/host-ca.pem:ro",
                 "-e", "PIP_CERT=/run/host-ca.pem"]
ONE_RULE = "*nat\n-A KUBE-SVC-Q7IJ732UBZY4AJKA -j KUBE-SEP-TWZJG7ZWZYI5EC7J\nCOMMIT\n"


def unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"KPLAB_REQUIRE_DOCKER=1, but {reason}", pytrace=False)
    pytest.skip(reason)


class Docker:
    """The docker command against one engine, and what this module made on it."""

    def __init__(self, host: str):
        self.host = host
        self.prefix = f"kplab-{secrets.token_hex(3)}"
        self.containers: list[str] = []
        self.images: list[str] = []

    def __call__(self, *args: str, input: str | None = None, timeout: float = 900,
                 check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(["docker", "-H", self.host, *args], input=input, text=True,
                              capture_output=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args[:3])} … failed ({done.returncode}):\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def name(self, what: str) -> str:
        return f"{self.prefix}-{what}"

    def answers(self) -> bool:
        return self("version", check=False, timeout=30).returncode == 0

    def has_image(self, name: str) -> bool:
        return self("image", "inspect", name, check=False).returncode == 0

    def cleanup(self) -> None:
        for name in self.containers:
            self("rm", "-f", name, check=False)
        for name in reversed(self.images):
            self("rmi", "-f", name, check=False)


def base_image(docker: Docker) -> str:
    """KPLAB_BASE when the engine has it, else a bare bookworm made now (removed at the end)."""
    base = os.environ.get("KPLAB_BASE", "")
    if base and docker.has_image(base):
        return base
    if not (shutil.which("debootstrap") and os.geteuid() == 0):
        unavailable("no base image (set KPLAB_BASE to a Debian bookworm image on the engine, or "
                    "run as root with debootstrap installed)")
    mirror = os.environ.get("KPLAB_DEBIAN_MIRROR", "http://deb.debian.org/debian")
    name = f"{docker.name('base')}:bookworm"
    with tempfile.TemporaryDirectory(prefix="kplab-rootfs-") as tmp:
        made = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", f"{tmp}/rootfs",
                               mirror], capture_output=True, text=True, timeout=900)
        if made.returncode != 0:
            unavailable(f"debootstrap failed (no Debian mirror?): {made.stderr[-500:]}")
        tar = subprocess.run(["tar", "-C", f"{tmp}/rootfs", "-c", "."], capture_output=True,
                             check=True)
        subprocess.run(["docker", "-H", docker.host, "import", "-", name], input=tar.stdout,
                       check=True, capture_output=True)
    docker.images.append(name)
    return name


def unzip_as_gradescope(archive: Path, dest: Path) -> None:
    """What Gradescope's image build does with the upload: the zip into /autograder/source,
    executable bits kept."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            path = Path(zf.extract(info, dest))
            mode = info.external_attr >> 16
            if mode:
                path.chmod(mode & 0o777)


def gradescope_image(docker: Docker, base: str, archive: Path, tag: str) -> None:
    """The autograder image as Gradescope builds it: source unpacked, setup.sh run (network),
    run_autograder copied to /autograder/run_autograder; committed as `tag`."""
    name = docker.name("gs-setup")
    docker.containers.append(name)
    with tempfile.TemporaryDirectory(prefix="kplab-gs-") as tmp:
        unzip_as_gradescope(archive, Path(tmp) / "autograder" / "source")
        docker("create", "--name", name, *SETUP_NETWORK, "-w", "/autograder", base, "bash", "-ec",
               "cp /autograder/source/run_autograder /autograder/run_autograder\n"
               "bash /autograder/source/setup.sh")
        docker("cp", f"{tmp}/autograder", f"{name}:/")
    docker("start", "-a", name, timeout=1200)
    docker("commit", name, tag)
    docker.images.append(tag)
    docker("rm", name)
    docker.containers.remove(name)


def run_gradescope(docker: Docker, image: str, submission: Path, results: Path, *extra: str) -> dict:
    """One submission through run_autograder: no network, the capabilities `extra` gives."""
    results.mkdir(parents=True, exist_ok=True)
    docker("run", "--rm", "--network", "none", *extra, "-w", "/autograder",
           "-v", f"{submission}:/autograder/submission:ro", "-v", f"{results}:/autograder/results",
           image, "/autograder/run_autograder", timeout=600)
    return json.loads((results / "results.json").read_text())


def bundle(platform: str, out: Path, *numbers: str) -> Path:
    args = [sys.executable, "-m", "lab_runner", "autograder", platform, "lab-3", "-o", str(out)]
    for n in numbers:
        args += ["-e", n]
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not leaks(out), "a bundle holds a solution"
    return out


# -- fixtures ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def docker(engine):
    """The docker command against test_docker.py's engine (DOCKER_HOST's, or a private one it
    starts and, after checking nothing was left on it, stops)."""
    made = Docker(os.environ.get("DOCKER_HOST", DEFAULT_HOST))
    yield made
    made.cleanup()


@pytest.fixture(scope="module")
def base(docker):
    return base_image(docker)


@pytest.fixture(scope="module")
def gs_image(docker, base, tmp_path_factory):
    out = bundle("gradescope", tmp_path_factory.mktemp("gs"), "1", "3")
    tag = f"{docker.name('gradescope')}:set-up"
    gradescope_image(docker, base, out / "autograder.zip", tag)
    return tag


# -- Gradescope ----------------------------------------------------------------------------------------
def test_gradescope_grades_statically_with_default_capabilities(docker, gs_image, tmp_path):
    submission = tmp_path / "submission"
    submission.mkdir()
    shutil.copy(SOLUTIONS / "ex1-matching.rules", submission / "ex1-matching.rules")
    (submission / "ex3.rules").write_text(ONE_RULE)
    doc = run_gradescope(docker, gs_image, submission, tmp_path / "results")
    assert gradescope_problems(doc) == []
    assert doc["extra_data"]["mode"] == "static"
    assert "CAP_NET_ADMIN" in doc["extra_data"]["mode_reason"] and "static" in doc["output"]
    by_exercise = {}
    for test in doc["tests"]:
        by_exercise.setdefault(test["number"].split(".")[0], []).append(test)
    assert sum(t["score"] for t in by_exercise["1"]) == 11  # the reference answer: full marks
    assert 0 < sum(t["score"] for t in by_exercise["3"]) < 10  # one rule of four: partial
    assert doc["score"] == sum(t["score"] for t in doc["tests"])
    assert "Hints for exercise 3" in doc["output"] and "Hints for exercise 1" not in doc["output"]


def test_gradescope_grades_live_where_the_container_can(docker, gs_image, tmp_path):
    submission = tmp_path / "submission" / "repo"  # a submission from GitHub: a directory tree
    submission.mkdir(parents=True)
    shutil.copy(SOLUTIONS / "ex1-matching.rules", submission / "ex1.rules")
    shutil.copy(SOLUTIONS / "ex3-random-selection.rules", submission / "ex3-random-selection.rules")
    doc = run_gradescope(docker, gs_image, submission.parent, tmp_path / "results", *LIVE)
    assert gradescope_problems(doc) == []
    assert doc["extra_data"]["mode"] == "live", doc["output"]
    assert doc["score"] == 21 and all(t["status"] == "passed" for t in doc["tests"]), doc


def test_gradescope_says_what_to_hand_in(docker, gs_image, tmp_path):
    submission = tmp_path / "submission"
    submission.mkdir()
    (submission / "my answer.txt").write_text(ONE_RULE)
    doc = run_gradescope(docker, gs_image, submission, tmp_path / "results")
    assert gradescope_problems(doc) == [] and doc["score"] == 0
    assert "rename your answer to ex1-matching.rules" in doc["tests"][0]["output"]


# -- PrairieLearn --------------------------------------------------------------------------------------
def test_prairielearn_image_grades_grade_student(docker, base, tmp_path):
    out = bundle("prairielearn", tmp_path / "pl", "3")
    tag = f"{docker.name('prairielearn')}:grader"
    docker("build", "-q", "--network", "host", "--force-rm", "--build-arg", f"BASE={base}",
           "-t", tag, str(out / "grader"), timeout=1200)
    docker.images.append(tag)
    info = json.loads((out / "questions/ex3-random-selection/info.json").read_text())
    grade = tmp_path / "grade"
    (grade / "student").mkdir(parents=True)
    (grade / "results").mkdir()
    shutil.copy(SOLUTIONS / "ex3-random-selection.rules", grade / "student/ex3-random-selection.rules")
    docker("run", "--rm", "--network", "none", "-v", f"{grade}:/grade", tag,
           info["externalGradingOptions"]["entrypoint"], timeout=600)
    doc = json.loads((grade / "results/results.json").read_text())
    assert prairielearn_problems(doc) == []
    assert doc["gradable"] and doc["score"] == 1.0, doc
    assert doc["message"].startswith("graded static") and "CAP_NET_ADMIN" in doc["message"]


# -- GitHub Classroom ----------------------------------------------------------------------------------
RUNNER_USER = """apt-get update -qq && apt-get install -y -qq sudo >/dev/null
useradd -m runner && echo 'runner ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/runner
mkdir -p /home/runner/work && chown -R runner /home/runner/work"""


def test_github_workflow_job_grades_live_and_reports_points(docker, base, tmp_path):
    repo = bundle("github", tmp_path / "gh", "3")
    starter = repo / "ex3-random-selection.rules"
    starter.write_text(starter.read_text().split("*nat")[0]
                       + (SOLUTIONS / "ex3-random-selection.rules").read_text())  # the student's work
    flow = yaml.safe_load((repo / ".github/workflows/classroom.yml").read_text())
    steps = flow["jobs"]["run-autograding-tests"]["steps"]
    runs = [s["run"] for s in steps if "run" in s]
    install, grading = [r for r in runs if "install.sh" in r], [r for r in runs if "install.sh" not in r]
    graders = [s for s in steps if "autograding-command-grader" in s.get("uses", "")]
    work = "/home/runner/work/repo"
    # The job's setup (the runner VM has a network): a user with sudo, the checkout, install.
    setup = docker.name("gh-setup")
    docker.containers.append(setup)
    docker("create", "--name", setup, *SETUP_NETWORK, base, "sleep", "infinity")
    docker("start", setup)
    docker("exec", setup, "bash", "-ec", RUNNER_USER, timeout=600)
    docker("cp", str(repo), f"{setup}:{work}")
    docker("exec", setup, "chown", "-R", "runner", work)
    for command in install:
        docker("exec", "-u", "runner", "-w", work, setup, "bash", "-ec", command, timeout=1200)
    image = f"{docker.name('github')}:set-up"
    docker("commit", setup, image)
    docker.images.append(image)
    docker("rm", "-f", setup)
    # Grading: a VM's root may do anything; here NET_ADMIN and friends, and no network at all.
    job = docker.name("gh-job")
    docker.containers.append(job)
    docker("run", "-d", "--init", "--name", job, "--network", "none", *LIVE, image, "sleep",
           "infinity")
    for command in grading:
        docker("exec", "-u", "runner", "-w", work, job, "bash", "-ec", command, timeout=900)
    points = 0
    for step in graders:  # autograding-command-grader: exit 0 earns max-score, else 0
        done = docker("exec", "-u", "runner", "-w", work, job, "bash", "-c",
                      step["with"]["command"], check=False, timeout=60)
        points += step["with"]["max-score"] if done.returncode == 0 else 0
    results = json.loads(docker("exec", job, "cat", f"{work}/.kplab-results/results.json").stdout)
    docker("rm", "-f", job)
    assert results["mode"] == "live", results["reason"]
    # What the reporter posts to Classroom: Points <sum of the graders>/<sum of their max-score>.
    maximum = sum(s["with"]["max-score"] for s in graders)
    assert (points, maximum) == (results["score"], results["max_score"]) == (10, 10), results
