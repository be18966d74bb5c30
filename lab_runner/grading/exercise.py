"""An exercise as data: its task, hints, lab variant, starting state, allowed chains and checks."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lab_runner import lab_file
from lab_runner.errors import LabError, LabFileError
from lab_runner.lab import _with_overrides
from lab_runner.model import Lab
from lab_runner.ruleset import nft_render
from lab_runner.ruleset.render import render

KEYS = {"number", "title", "task", "hints", "lab", "cluster_cidr", "start", "allowed", "checks",
        "max_bytes", "checks_of", "tolerance", "round_robin", "concerns", "format"}
CHECK_KEYS = {"points", "title", "static"}
STATIC_POLICIES = ("decided", "full", "zero")  # `full`/`zero`: not decidable without a kernel
DEFAULT_MAX_BYTES = 64 * 1024
DEFAULT_TOLERANCE = 0.5  # percentage points an endpoint's share may be off its intended share
ROUND_ROBIN = ("refuse", "accept")  # how `-m statistic --mode nth` (round robin) is judged
# What a submission is written in: iptables-restore text, or (a lab in kube-proxy's nftables
# mode) `nft -f` commands on `table ip kube-proxy` (grading/nft_submission.py).
FORMATS = {"iptables": "iptables-restore", "nftables": "nft"}


@dataclass(frozen=True)
class CheckSpec:
    """One graded behaviour; `static` says how static mode scores it when it cannot decide."""

    id: str
    points: int
    title: str
    static: str = "decided"


@dataclass(frozen=True)
class Exercise:
    number: str  # "1", "3", or a variant such as "3v5"
    slug: str
    title: str
    task: str
    hints: tuple[str, ...]
    lab: Lab
    start_document: str
    allowed: dict[str, tuple[str, ...]]
    checks: tuple[CheckSpec, ...]
    directory: Path
    max_bytes: int = DEFAULT_MAX_BYTES
    check_files: tuple[Path, ...] = field(default=())
    tolerance: float = DEFAULT_TOLERANCE / 100  # as a share: 0.005
    round_robin: str = "refuse"
    concerned: tuple[str, ...] = ()  # starting-state lines the task is about (rewrites may drop)
    format: str = "iptables-restore"  # or "nft": see FORMATS

    @property
    def max_score(self) -> int:
        return sum(c.points for c in self.checks)

    def check(self, check_id: str) -> CheckSpec:
        for spec in self.checks:
            if spec.id == check_id:
                return spec
        raise KeyError(check_id)

    def chain_allowed(self, table: str, chain: str) -> bool:
        return any(fnmatch.fnmatchcase(chain, pattern) for pattern in self.allowed.get(table, ()))


def exercises_dir(lab: str) -> Path:
    return lab_file.lab_path(lab).parent / "exercises"


def find(lab: str, which: str | int) -> Exercise:
    """The exercise `which` names: its number as `lab-runner exercises` shows it (3, 3v5; `03`,
    `ex3` and `3V5` read alike) or its directory's name. The error names the lab and the numbers
    there are (what -e takes), never where the kit is installed."""
    wanted = str(which).strip()
    number = re.fullmatch(r"(?:ex)?0*(\d+)(v0*\d+)?", wanted, re.IGNORECASE)
    if number:
        variant = number.group(2) or ""
        wanted = number.group(1) + (f"v{int(variant[1:])}" if variant else "")
    dirs = sorted(p for p in exercises_dir(lab).glob("ex*") if (p / "exercise.yaml").is_file())
    # The directory named so first (one file read), then every exercise's own `number:`.
    likely = [d for d in dirs if d.name == wanted or d.name.startswith(f"ex{wanted}-")]
    for d in likely + [d for d in dirs if d not in likely]:
        ex = load(d)
        if wanted in (ex.number, d.name):
            return ex
    every = [load(d) for d in dirs]
    numbers = ", ".join(ex.number for ex in every) or "(none)"
    raise LabError(f"no exercise {str(which)!r} in {lab_file.load(lab).id}; -e takes one of: "
                   f"{numbers} (`lab-runner exercises {lab}` lists them)")


def all_exercises(lab: str) -> list[Exercise]:
    root = exercises_dir(lab)
    return [load(d) for d in sorted(root.glob("ex*")) if (d / "exercise.yaml").is_file()]


def load(directory: Path) -> Exercise:
    path = directory / "exercise.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise LabFileError(str(path), [f"cannot read: {exc}"]) from exc
    problems: list[str] = []
    if not isinstance(data, dict):
        raise LabFileError(str(path), ["must be a mapping"])
    for key in data:
        if key not in KEYS:
            problems.append(f"{key}: unknown field; valid fields are: {', '.join(sorted(KEYS))}")
    # `lab:` names a lab file relative to the exercise (a variant); default: the lab itself.
    lab_ref = data.get("lab")
    lab = lab_file.load((directory / lab_ref).resolve() if lab_ref else directory.parent.parent)
    lab = _with_overrides(lab, None, data.get("cluster_cidr"))
    checks = []
    for check_id, spec in (data.get("checks") or {}).items():
        spec = spec or {}
        unknown = set(spec) - CHECK_KEYS
        if unknown:
            problems.append(f"checks.{check_id}: unknown field(s) {', '.join(sorted(unknown))}")
        if spec.get("static", "decided") not in STATIC_POLICIES:
            problems.append(f"checks.{check_id}.static: choose one of {', '.join(STATIC_POLICIES)}")
        checks.append(CheckSpec(check_id, int(spec.get("points", 1)), spec.get("title", check_id),
                                spec.get("static", "decided")))
    # Required, so that no iptables exercise refuses every answer by an oversight; `{}` says so
    # on purpose (a wiring exercise, whose answers are `ip` commands).
    raw_allowed = data.get("allowed")
    allowed = {}
    if not isinstance(raw_allowed, dict):
        problems.append("allowed: list the tables and chains a submission may write, e.g. "
                        "{nat: [KUBE-SVC-*]} (`allowed: {}` when it writes no iptables rules)")
    for table, chains in (raw_allowed if isinstance(raw_allowed, dict) else {}).items():
        if isinstance(chains, list) and all(isinstance(c, str) for c in chains):
            allowed[table] = tuple(chains)
        else:
            problems.append(f"allowed.{table}: a list of chain names or globs, e.g. [KUBE-SVC-*]")
    start = start_document(lab, data.get("start") or {}, problems)
    tolerance = data.get("tolerance", DEFAULT_TOLERANCE)
    if not isinstance(tolerance, (int, float)) or not 0 < tolerance < 50:
        problems.append("tolerance: percentage points an endpoint's share may be off, e.g. 2")
        tolerance = DEFAULT_TOLERANCE
    round_robin = data.get("round_robin", "refuse")
    if round_robin not in ROUND_ROBIN:
        problems.append(f"round_robin: choose one of {', '.join(ROUND_ROBIN)}")
    concerned = _concerned(lab, data, start, problems)
    fmt = data.get("format", FORMATS.get(lab.proxy_mode, "iptables-restore"))
    if fmt != FORMATS.get(lab.proxy_mode):
        problems.append(f"format: {fmt!r} does not fit a lab in kube-proxy's {lab.proxy_mode} "
                        f"mode, whose submissions are {FORMATS.get(lab.proxy_mode)!r}")
    if problems:
        raise LabFileError(str(path), problems)
    number = str(data.get("number", re.match(r"ex(\w+?)-", directory.name + "-").group(1)))
    checks_dir = directory.parent.parent / "checks"
    return Exercise(number=number, slug=directory.name, title=data.get("title", directory.name),
                    task=str(data.get("task", "")).strip(),
                    hints=tuple(str(h).strip() for h in data.get("hints") or ()), lab=lab,
                    start_document=start, allowed=allowed, checks=tuple(checks),
                    directory=directory, max_bytes=int(data.get("max_bytes", DEFAULT_MAX_BYTES)),
                    check_files=tuple(sorted(checks_dir.glob(f"test_ex{_check_prefix(data, number)}_*.py"))),
                    tolerance=float(tolerance) / 100, round_robin=round_robin,
                    concerned=concerned, format=fmt)


def _check_prefix(data: dict, number: str) -> str:
    """Variants (3v5) share their exercise's checks (test_ex3_*) unless they name their own."""
    return str(data.get("checks_of", re.match(r"\d+", number).group(0)))


def _concerned(lab: Lab, data: dict, document: str, problems: list[str]) -> tuple[str, ...]:
    """The starting state's lines the task is about, which an answer may rewrite or drop: those
    start.replace changed (a break-fix's faults) and those matching a `concerns` pattern."""
    start = data.get("start") or {}
    lines = document.splitlines()
    untouched = set(start_document(lab, {"remove": start.get("remove") or []}, []).splitlines()) \
        if start.get("replace") else set(lines)
    patterns = []
    for i, pattern in enumerate(data.get("concerns") or []):
        try:
            patterns.append(re.compile(pattern))
        except re.error as exc:
            problems.append(f"concerns[{i}]: {pattern!r} is not a regular expression: {exc}")
    return tuple(line for line in lines
                 if line not in untouched or any(p.search(line) for p in patterns))


def start_document(lab: Lab, start: dict, problems: list[str]) -> str:
    """The rendered chain set (nftables mode: the `nft -f` document of kube-proxy's table) with
    the lines the exercise asks the student for removed or changed.

    start.remove: regular expressions; a rendered line matching one is left out.
    start.replace: [pattern, replacement] pairs applied to the remaining lines (break-fix).
    """
    lines = (nft_render.render(lab, lab.profile) if lab.proxy_mode == "nftables"
             else render(lab, lab.profile)).splitlines()
    for i, pattern in enumerate(start.get("remove") or []):
        regex = re.compile(pattern)
        kept = [line for line in lines if not regex.search(line)]
        if len(kept) == len(lines):
            problems.append(f"start.remove[{i}]: {pattern!r} matches no rendered line")
        lines = kept
    for i, (pattern, replacement) in enumerate(start.get("replace") or []):
        regex = re.compile(pattern)
        if not any(regex.search(line) for line in lines):
            problems.append(f"start.replace[{i}]: {pattern!r} matches no rendered line")
        lines = [regex.sub(replacement, line) for line in lines]
    return "\n".join(lines) + "\n"
