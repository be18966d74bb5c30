"""Read `kubectl get svc,endpointslices,pods,nodes -A -o yaml` (or -o json) into objects by kind."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

import yaml

from lab_runner.errors import LabError

KINDS = ("Service", "EndpointSlice", "Pod", "Node")
COMMAND = "kubectl get svc,endpointslices,pods,nodes -A -o yaml"


class ImportProblem(LabError):
    """Objects `import` cannot read, or nothing usable in them; names the file and the object."""


@dataclass
class Objects:
    """The objects of the four kinds import reads, in file order, and notes on everything else."""

    by_kind: dict[str, list[dict]] = field(default_factory=lambda: {k: [] for k in KINDS})
    ignored: list[str] = field(default_factory=list)  # "source: Kind ns/name" of other kinds
    sources: dict[int, str] = field(default_factory=dict)  # id(item) -> the file it came from

    services = property(lambda self: self.by_kind["Service"])
    slices = property(lambda self: self.by_kind["EndpointSlice"])
    pods = property(lambda self: self.by_kind["Pod"])
    nodes = property(lambda self: self.by_kind["Node"])

    def add(self, item: dict, source: str, where: str) -> None:
        kind = item.get("kind")
        if kind not in self.by_kind:
            self.ignored.append(f"{source}: {kind or '(no kind)'} {name_of(item) or where} "
                                f"(import reads {', '.join(KINDS)})")
            return
        if not isinstance(item.get("metadata"), dict):
            item["metadata"] = {}
        self.by_kind[kind].append(item)
        self.sources[id(item)] = source

    def source_of(self, item: dict) -> str:
        return self.sources.get(id(item), "")


def name_of(item: dict) -> str:
    """`ns/name` (or `name` for a cluster-scoped object such as a Node)."""
    meta = item.get("metadata") or {}
    name = meta.get("name") or "(no name)"
    return f"{meta['namespace']}/{name}" if meta.get("namespace") else name


def read(paths: list[str], stdin_text: str | None = None) -> Objects:
    """Read every file (`-` is standard input) into one Objects."""
    found = Objects()
    for path in paths:
        if path == "-":
            text, source = (sys.stdin.read() if stdin_text is None else stdin_text), "<stdin>"
        else:
            source = path
            try:
                with open(path, encoding="utf-8") as handle:
                    text = handle.read()
            except (OSError, UnicodeDecodeError) as exc:
                raise ImportProblem(f"{path}: cannot read it: {exc}") from exc
        read_text(text, source, found)
    return found


def read_text(text: str, source: str, into: Objects | None = None) -> Objects:
    """Add the objects of one document (a List, or one object; JSON or YAML) to `into`."""
    found = Objects() if into is None else into
    for number, document in enumerate(_documents(text, source), start=1):
        if document is None:
            continue
        where = f"document {number}"
        if not isinstance(document, dict) or "kind" not in document:
            raise ImportProblem(f"{source}, {where}: not a Kubernetes object or List (no `kind`); "
                                f"take it with `{COMMAND}`")
        if document["kind"] == "List" or document["kind"].endswith("List"):
            items = document.get("items")
            if not isinstance(items, list):
                raise ImportProblem(f"{source}, {where}: a {document['kind']} without an `items` "
                                    "list")
            for index, item in enumerate(items):
                if not isinstance(item, dict):
                    raise ImportProblem(f"{source}: items[{index}] is not an object")
                # `kubectl get svc -o yaml` of one kind leaves `kind` off its items.
                if "kind" not in item and document["kind"] != "List":
                    item = {**item, "kind": document["kind"][:-len("List")]}
                found.add(item, source, f"items[{index}]")
        else:
            found.add(document, source, where)
    return found


def _documents(text: str, source: str) -> list:
    if not text.strip():
        raise ImportProblem(f"{source}: empty; take the objects with `{COMMAND}`")
    if text.lstrip().startswith(("{", "[")):
        try:
            return [json.loads(text)]
        except json.JSONDecodeError as exc:
            raise ImportProblem(f"{source}, line {exc.lineno}: not valid JSON: {exc.msg}") from exc
    try:  # libyaml's loader when PyYAML has it: 5,000 pods' objects in 1 s instead of 13
        return list(yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc
        raise ImportProblem(f"{source}{where}: neither YAML nor JSON: {problem}") from exc
