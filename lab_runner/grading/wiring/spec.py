"""A wiring exercise's wiring.yaml: the pod the student wires, checked as the lab file checks pods."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

import yaml

from lab_runner import lab_file
from lab_runner.errors import LabError, LabFileError
from lab_runner.grading import exercise as exercises
from lab_runner.model import Pod

SPEC_FILE = "wiring.yaml"
DEFAULT_MAX_COMMANDS = 40


@dataclass(frozen=True)
class WiringSpec:
    """What a wiring exercise gives the student: the pod to wire, on which node, which address."""

    pod: Pod
    max_commands: int = DEFAULT_MAX_COMMANDS

    @property
    def address(self) -> ipaddress.IPv4Address:
        return self.pod.ip


def applies(ex: exercises.Exercise) -> bool:
    return (ex.directory / SPEC_FILE).is_file()


def load_spec(ex: exercises.Exercise) -> WiringSpec:
    path = ex.directory / SPEC_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LabFileError(str(path), [f"cannot read: {exc}"]) from exc
    raw = data.get("pod") or {}
    problems = [f"{key}: unknown field; valid fields are: pod, max_commands"
                for key in data if key not in ("pod", "max_commands")]
    try:
        # The pod goes through the lab file's own checks: put it in a copy of the lab's file.
        text = Path(ex.lab.source).read_text(encoding="utf-8")
        lab_data = yaml.safe_load(text)
        lab_data["pods"] = list(lab_data.get("pods") or []) + [raw]
        checked = lab_file.parse(yaml.safe_dump(lab_data), f"{path} (pod)")
        pod = checked.pods[-1]
    except (LabError, KeyError, TypeError) as exc:
        raise LabFileError(str(path), problems + [f"pod: {exc}"]) from exc
    if problems:
        raise LabFileError(str(path), problems)
    return WiringSpec(pod, int(data.get("max_commands", DEFAULT_MAX_COMMANDS)))
