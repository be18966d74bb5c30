"""The imported lab as lab.yaml text under comments: where each fact came from, what is left out."""

from __future__ import annotations

import yaml

from lab_runner.importer.build import Result


def lab_yaml(result: Result, sources: list[str], rules: str | None) -> str:
    head = [_one_line(f"# Made by `lab-runner import` from {', '.join(sources)}"
                      + (f" and the node's rules {rules}" if rules else "") + "."),
            "# Check it against the node: lab-runner rules THIS.yaml --diff NODE.rules"]
    head += [f"# {_one_line(line)}" for line in result.notes]
    if result.warnings:
        head.append("# Left out or changed (the lab differs from the cluster here):")
        head += [f"#   - {_one_line(str(warning))}" for warning in result.warnings]
    # libyaml's dumper when PyYAML has it: 5,000 pods in 0.3 s instead of 5.
    body = yaml.dump(result.lab, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper),
                     sort_keys=False, default_flow_style=False, width=100, allow_unicode=True)
    return "\n".join(head) + "\n" + body


def _one_line(text: str) -> str:
    """Names come from the objects: a line break in one must not end its comment."""
    return " ".join(text.splitlines())
