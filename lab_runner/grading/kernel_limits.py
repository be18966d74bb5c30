"""Rules the kit's reader would take but iptables-restore or the kernel refuses, refused when a
submission is read.

Live mode would get the refusal from iptables-restore (with a poor message); static mode would
grade the rule as if it worked. Refusing it while reading gives both modes the same, clear error
naming the file and line, before any lab is built. Each refusal here was seen with iptables-restore
1.8.9 (nf_tables) inside `unshare -n` (tests/integration/test_intake_vs_kernel.py keeps checking).
"""

from __future__ import annotations

import ipaddress

from lab_runner.errors import SubmissionError
from lab_runner.grading.characters import lines
from lab_runner.ruleset.parse import split
from lab_runner.ruleset.semantics import ADDRESS_TYPES
from lab_runner.ruleset.tokens import read_rule

FILTER_TARGETS = ("DROP", "REJECT")  # the nat table only chooses where a connection goes
PORT_PROTOCOLS = ("tcp", "udp", "sctp", "dccp", "6", "17", "132", "33")  # DNAT/SNAT to a port
RULE_COMMANDS = ("-A", "--append", "-I", "--insert", "-R", "--replace", "-D", "--delete")
MAX_CHAIN_NAME = 28  # "chain name … too long (must be under 29 chars)"
STANDARD_TARGETS = ("ACCEPT", "DROP", "QUEUE", "RETURN")  # a chain may not take these names
# Options iptables wants with a target or match, in its words.
NEEDED = {
    ("target", "DNAT"): (("--to-destination", "--to"), "--to-destination"),
    ("target", "SNAT"): (("--to-source", "--to"), "--to-source"),
    ("target", "MARK"): (("--set-xmark", "--set-mark", "--and-mark", "--or-mark", "--xor-mark"),
                         "one of --set-xmark, --set-mark, --and-mark, --or-mark, --xor-mark"),
    ("target", "CONNMARK"): (("--set-xmark", "--set-mark", "--save-mark", "--restore-mark",
                              "--and-mark", "--or-mark", "--xor-mark"), "an operation"),
    ("match", "mark"): (("--mark",), "--mark"),
    ("match", "comment"): (("--comment",), "--comment"),
    ("match", "recent"): (("--set", "--rcheck", "--update", "--remove"),
                          "one of --set, --rcheck, --update, --remove"),
}
# How many words each option of the common matches and targets takes: iptables refuses a word
# left over ("Bad argument"), such as a `# comment` after the rule. Others are not checked.
ARITY = {
    "tcp": {"--dport": 1, "--sport": 1, "--destination-port": 1, "--source-port": 1,
            "--tcp-flags": 2, "--syn": 0, "--tcp-option": 1},
    "udp": {"--dport": 1, "--sport": 1, "--destination-port": 1, "--source-port": 1},
    "comment": {"--comment": 1}, "mark": {"--mark": 1},
    "statistic": {"--mode": 1, "--probability": 1, "--every": 1, "--packet": 1},
    "multiport": {"--dports": 1, "--sports": 1, "--ports": 1, "--destination-ports": 1,
                  "--source-ports": 1},
    "DNAT": {"--to-destination": 1, "--to": 1, "--random": 0, "--persistent": 0},
    "SNAT": {"--to-source": 1, "--to": 1, "--random": 0, "--random-fully": 0, "--persistent": 0},
    "MASQUERADE": {"--to-ports": 1, "--random": 0, "--random-fully": 0},
    "MARK": {"--set-xmark": 1, "--set-mark": 1, "--and-mark": 1, "--or-mark": 1, "--xor-mark": 1},
    "RETURN": {}, "ACCEPT": {}, "DROP": {},
}
# -i / -o a built-in chain cannot see ("Can't use -o with PREROUTING").
NO_INTERFACE = {"i": ("POSTROUTING", "OUTPUT"), "o": ("PREROUTING", "INPUT")}


def refuse_what_the_kernel_refuses(text: str, name: str) -> None:
    """Raise SubmissionError (file and line) for the first line iptables-restore would refuse."""
    table = None
    for number, raw in enumerate(lines(text), start=1):
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        if not line or line[0] == "#" or line == "COMMIT":
            continue
        try:
            words = split(line.partition(" ")[2] if line.startswith("[") else line)
        except ValueError:
            continue  # the parser has named the unbalanced quotes
        problem = _chain_name_problem(words) or _rule_problem(table, words)
        if problem:
            raise SubmissionError(f"{name}, line {number}: {problem}\n    {line}")


def _chain_name_problem(words: list[str]) -> str | None:
    """What iptables says against a chain a `:NAME` or `-N NAME` line declares; None if fine."""
    if words[0].startswith(":"):
        chain = words[0][1:]
    elif words[0] in ("-N", "--new-chain") and len(words) > 1:
        chain = words[1]
    else:
        return None
    if len(chain) > MAX_CHAIN_NAME:
        return (f"chain name {chain!r} has {len(chain)} characters; iptables allows at most "
                f"{MAX_CHAIN_NAME} (kube-proxy's names have 25)")
    if chain[:1] in ("-", "!"):
        return f"chain name {chain!r} starts with {chain[0]!r}, which iptables does not allow"
    if chain in STANDARD_TARGETS:
        return f"chain name {chain!r} is a target's name; iptables does not allow it"
    return None


def _rule_problem(table: str | None, words: list[str]) -> str | None:
    if len(words) < 2 or words[0] not in RULE_COMMANDS:
        return None
    chain, rest = words[1], words[2:]
    if words[0] not in ("-A", "--append") and rest and rest[0].isdigit():
        rest = rest[1:]  # -I CHAIN [n] rule, -R CHAIN n rule, -D CHAIN n
        if not rest and words[0] in ("-D", "--delete"):
            return None
    repeated = _repeated_basic_option(rest)
    if repeated:
        return f"{repeated} given twice in one rule; iptables allows one (write two rules)"
    try:
        parts = read_rule(rest)
    except ValueError:
        return None  # the parser has named it
    return (_problem(table, parts) or _interface_problem(chain, parts)
            or _needed_option(parts) or _protocol_problem(parts) or _left_over(parts))


def _repeated_basic_option(words: list[str]) -> str | None:
    from lab_runner.ruleset.tokens import BASIC_OPTIONS

    seen: set[str] = set()
    for word in words:
        key = BASIC_OPTIONS.get(word)
        if key is not None:
            if key in seen:
                return f"-{key}"
            seen.add(key)
    return None


def _problem(table: str | None, parts: dict) -> str | None:
    """What the kernel would say against one rule, in words a student can act on; None if fine."""
    target, args = parts["target"], parts["target_args"]
    if table == "nat" and target in FILTER_TARGETS:
        return (f"-j {target} in the nat table: the kernel refuses it (the nat table is not for "
                "filtering). A Service's rules choose where a connection goes; they never drop it.")
    addresses = [(key, inverted, value) for key, inverted, value in parts["basic"]
                 if key in ("s", "d")]
    for key, _, value in addresses:
        if not all(_is_ipv4_network(v) for v in value.split(",")):
            return f"{value!r} is not an IPv4 address or network (-{key}); iptables refuses the rule."
    for key, inverted, value in addresses:
        if inverted and "," not in value and ipaddress.IPv4Network(value, strict=False).prefixlen == 0:
            return (f"! -{key} {value}: `!` on a /0 network (every address) is refused by "
                    "iptables-restore (nf_tables: \"RULE_APPEND failed (Invalid argument)\"); it "
                    "would match no packet: delete the rule, or drop the `!` to match all.")
    if any(inv for _, inv, _ in addresses) and any("," in value for _, _, value in addresses):
        return ("`!` on -s or -d in a rule whose -s or -d lists several addresses: iptables "
                "refuses it (\"! not allowed with multiple source or destination IP "
                "addresses\"); write one rule per address.")
    for match in parts["matches"]:
        if match.module == "statistic":
            problem = _statistic_problem(match.args)
            if problem:
                return problem
        if match.module == "addrtype":
            problem = _addrtype_problem(match.args)
            if problem:
                return problem
    if target in ("DNAT", "SNAT") and _names_a_port(args):
        protocol = next((v.lower() for k, inv, v in parts["basic"] if k == "p" and not inv), "")
        if protocol not in PORT_PROTOCOLS:
            return (f"{target} to a port needs the protocol matched in the same rule (-p tcp or "
                    "-p udp); the kernel refuses it without.")
    return None


def _statistic_problem(args: tuple[str, ...]) -> str | None:
    mode = _option_value(args, "--mode")
    probability = _option_value(args, "--probability")
    every, packet = _option_value(args, "--every"), _option_value(args, "--packet")
    if mode not in ("random", "nth"):
        return "-m statistic needs --mode random or --mode nth."
    if mode == "random":
        if probability is None:
            return ("-m statistic --mode random needs --probability, a decimal number from 0 to "
                    "1 (iptables refuses the rule).")
        if not _is_probability(probability):
            return (f"--probability {probability}: it must be a decimal number from 0 to 1 "
                    "(iptables refuses the rule).")
        return None
    if every is None or packet is None or not every.isdigit() or not packet.isdigit() \
            or int(every) < 1:
        return ("-m statistic --mode nth needs both --every N (N ≥ 1) and --packet P "
                "(iptables refuses the rule).")
    if int(packet) >= int(every):
        return f"--packet {packet} must be from 0 to {int(every) - 1} for --every {every}."
    return None


def _addrtype_problem(args: tuple[str, ...]) -> str | None:
    for option, value in zip(args, args[1:]):
        if option in ("--src-type", "--dst-type"):
            unknown = [t for t in value.split(",") if t.upper() not in ADDRESS_TYPES]
            if unknown:
                return (f"{option} {value}: {unknown[0]!r} is not an address type iptables knows "
                        f"({', '.join(sorted(ADDRESS_TYPES))}).")
    return None


def _interface_problem(chain: str, parts: dict) -> str | None:
    for key, _, _ in parts["basic"]:
        if chain in NO_INTERFACE.get(key, ()):
            side = "input" if key == "i" else "output"
            return (f"-{key} in {chain}: a packet has no {side} interface there yet; iptables "
                    "refuses the rule.")
    return None


def _needed_option(parts: dict) -> str | None:
    wanted = [(("target", parts["target"]), parts["target_args"])]
    wanted += [(("match", m.module), m.args) for m in parts["matches"]]
    for key, args in wanted:
        if key in NEEDED:
            options, words = NEEDED[key]
            if not any(option in args for option in options):
                what = "-j" if key[0] == "target" else "-m"
                return f"{what} {key[1]} needs {words}; iptables refuses it without."
    return None


def _protocol_problem(parts: dict) -> str | None:
    protocol = next((v.lower() for k, inv, v in parts["basic"] if k == "p" and not inv), "")
    protocol = {"6": "tcp", "17": "udp"}.get(protocol, protocol)
    for match in parts["matches"]:
        if match.module in ("tcp", "udp") and protocol != match.module:
            return (f"-m {match.module} needs -p {match.module} in the same rule (iptables: "
                    f"\"{match.module.upper()} match requires '-p {match.module}'\").")
        if match.module in ("tcp", "udp", "multiport"):
            for option, value in zip(match.args, match.args[1:]):
                if option.endswith(("port", "ports")) and not _ports_ok(value):
                    return (f"{option} {value}: not a port iptables accepts (a number from 0 to "
                            "65535 without leading zeros, or a range a:b).")
    return None


def _left_over(parts: dict) -> str | None:
    groups = [(m.module, m.args) for m in parts["matches"]]
    if parts["target"] is not None:
        groups.append((parts["target"], parts["target_args"]))
    for owner, args in groups:
        arity = ARITY.get(owner)
        if arity is None:
            continue
        expected = 0
        for word in args:
            if word in arity:
                expected = arity[word]
            elif word == "!":
                continue
            elif expected:
                expected -= 1
            else:
                return (f"`{word}` is left over after {owner}'s options; iptables refuses it "
                        "(\"Bad argument\"). A comment goes on its own line starting with #, or "
                        "in -m comment --comment \"…\".")
    return None


def _ports_ok(value: str) -> bool:
    for port in value.replace(":", ",").split(","):
        if port and not (port.isdigit() and (port == "0" or not port.startswith("0"))
                         and int(port) <= 65535) and not port.isalpha():
            return False
    return True


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
