"""`lab-runner import`: a real cluster's Services, endpoints, pods and nodes rebuilt as a lab.yaml.

    objects.py     kubectl's output (a List, YAML or JSON, several files or stdin) sorted by kind
    node_rules.py  what a node's iptables-save says about kube-proxy: cluster CIDR, profile, nfacct
    build.py       the lab as plain data, and a warning for each object it cannot express
    services.py    Services and EndpointSlices as the lab's services and pods (part of build)
    plan.py        the lab's CIDRs, bridge, node network and profile, with their sources
    write.py       that data as lab.yaml text, each dropped object a comment

Errors are ImportProblem (a LabError, exit 1): a file that is not kubectl's output, or nothing
usable left; everything else the lab cannot express is a Warning, listed and written as a comment.
"""

from __future__ import annotations

from lab_runner.importer.build import Options, Result
from lab_runner.model import Lab


def import_lab(paths: list[str], options: Options, rules: str | None = None,
               stdin_text: str | None = None) -> tuple[str, Result, Lab]:
    """Read the objects (and the node's rules), build the lab, write it as lab.yaml text, and
    load that text back with the kit's own loader: what `up` and `rules` will see."""
    from lab_runner import lab_file
    from lab_runner.importer import build, objects, write

    found = objects.read(paths, stdin_text)
    facts = None
    if rules:
        from lab_runner.explain.dump import read_file
        from lab_runner.importer.node_rules import read_facts

        facts = read_facts(read_file(rules))
    result = build.build(found, options, facts)
    text = write.lab_yaml(result, [("<stdin>" if p == "-" else p) for p in paths], rules)
    return text, result, lab_file.parse(text, "<imported lab.yaml>")
