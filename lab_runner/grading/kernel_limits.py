"""Rules iptables-restore parses but the kernel refuses, refused when a submission is read.

Live mode would get the refusal from the kernel (with a poor message); static mode would grade
the rule as if it worked. Refusing it while reading gives both modes the same, clear error naming
the file and line, before any lab is built.
"""

from __future__ import annotations

import ipaddress
import shlex

from lab_runner.errors import SubmissionError
from lab_runner.ruleset.tokens import read_rule

FILTER_TARGETS = ("DROP", "REJECT")  # the nat table only chooses where a connection goes
PORT_PROTOCOLS = ("tcp", "udp", "sctp", "dccp", "6", "17", "132", "33")  # DNAT/SNAT to a port
RULE_COMMANDS = ("-A", "--append", "-I", "--insert", "-R", "--replace")


def refuse_what_the_kernel_refuses(text: str, name: str) -> None:
    """Raise SubmissionError (file and line) for the first rule the kernel would not accept."""
    table = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        words = shlex.split(line.partition(" ")[2] if line.startswith("[") else line,
                            comments=False) if line and not line.startswith(("#", ":")) else []
        if len(words) < 2 or words[0] not in RULE_COMMANDS:
            continue
        rest = words[2:]
        if words[0] not in ("-A", "--append") and rest and rest[0].isdigit():
            rest = rest[1:]  # -I CHAIN [n] rule, -R CHAIN n rule
        problem = _problem(table, read_rule(rest))
        if problem:
            raise SubmissionError(f"{name}, line {number}: {problem}\n    {line}")


def _problem(table: str | None, parts: dict) -> str | None:
    """What the kernel would say against one rule, in words a student can act on; None if fine."""
    target, args = parts["target"], parts["target_args"]
    if table == "nat" and target in FILTER_TARGETS:
        return (f"-j {target} in the nat table: the kernel refuses it (the nat table is not for "
                "filtering). A Service's rules choose where a connection goes; they never drop it.")
    for key, _, value in parts["basic"]:
        if key in ("s", "d") and not _is_ipv4_network(value):
            return f"{value!r} is not an IPv4 address or network (-{key}); iptables refuses the rule."
    for match in parts["matches"]:
        probability = _option_value(match.args, "--probability")
        if match.module == "statistic" and probability is not None \
                and not _is_probability(probability):
            return (f"--probability {probability}: it must be a decimal number from 0 to 1 "
                    "(iptables refuses the rule).")
    if target in ("DNAT", "SNAT") and _names_a_port(args):
        protocol = next((v.lower() for k, inv, v in parts["basic"] if k == "p" and not inv), "")
        if protocol not in PORT_PROTOCOLS:
            return (f"{target} to a port needs the protocol matched in the same rule (-p tcp or "
                    "-p udp); the kernel refuses it without.")
    return None


def _option_value(args: tuple[str, ...], option: str) -> str | None:
    return next((args[i + 1] for i, tok in enumerate(args[:-1]) if tok == option), None)


def _is_probability(text: str) -> bool:
    try:
        return 0.0 <= float(text) <= 1.0
    except ValueError:
        return False


def _is_ipv4_network(text: str) -> bool:
    try:
        ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        return False
    return True


def _names_a_port(target_args: tuple[str, ...]) -> bool:
    values = [target_args[i + 1] for i, tok in enumerate(target_args[:-1])
              if tok in ("--to-destination", "--to-source", "--to")]
    return any(":" in value for value in values)
