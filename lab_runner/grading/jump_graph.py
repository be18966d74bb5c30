"""Jumps the kernel refuses: too deep, in a loop, to a built-in chain, or to a NAT target from a
hook where it cannot act; refused when a submission is read, naming the line the kernel names.

The kernel (nf_tables) checks the chains a built-in chain reaches, each time a rule is added:
a chain 16 jumps below a built-in chain, or a loop, is "Too many links"; SNAT below PREROUTING or
MASQUERADE below INPUT is "Invalid argument". Chains no built-in chain reaches are not checked.
Measured with iptables-restore 1.8.9 (nf_tables) in `unshare -n`; iptables-legacy allows deeper
chains, so this is the stricter of the two, the one the labs use by default.
"""

from __future__ import annotations

from lab_runner.errors import SubmissionError
from lab_runner.ruleset.parse import BUILTIN_CHAINS, Rule, Ruleset

MAX_LEVEL = 15  # PREROUTING -> C1 -> … -> C15 loads; one more jump is "Too many links"
# The hooks where each NAT target may act (its chain must be reached only from these).
NAT_HOOKS = {"DNAT": ("PREROUTING", "OUTPUT"), "REDIRECT": ("PREROUTING", "OUTPUT"),
             "SNAT": ("POSTROUTING", "INPUT"), "MASQUERADE": ("POSTROUTING",)}


def refuse_bad_jumps(ruleset: Ruleset, base: Ruleset, name: str) -> None:
    """Raise SubmissionError for the first line of the submission (rules in `ruleset` but not
    in `base`, its starting state) after which the kernel would refuse the table."""
    kept = {id(rule) for rule in base.rules()}
    for table in ruleset.tables.values():
        rules = [rule for chain in table.chains.values() for rule in chain.rules]
        chains = set(table.chains)
        if _problem(table.name, chains, rules) is None:
            continue  # the usual case: one look at the whole table
        own = sorted((r for r in rules if id(r) not in kept), key=lambda r: r.line_no)
        added = [r for r in rules if id(r) in kept]
        for rule in own:
            added.append(rule)
            problem = _problem(table.name, chains, added)
            if problem:
                raise SubmissionError(f"{name}, line {rule.line_no}: {problem}\n    {rule.text}")


def _problem(table: str, chains: set[str], rules: list[Rule]) -> str | None:
    """What the kernel says against these rules of one table (with these chains), or None."""
    builtin = BUILTIN_CHAINS.get(table, ())
    jumps: dict[str, list[str]] = {}
    targets: dict[str, list[str]] = {}
    for rule in rules:
        if rule.target in builtin:
            return (f"jumps to the built-in chain {rule.target}; the kernel refuses a jump to a "
                    "built-in chain (\"No such file or directory\")")
        if rule.target in NAT_HOOKS:
            targets.setdefault(rule.chain, []).append(rule.target)
        elif rule.target in chains:
            jumps.setdefault(rule.chain, []).append(rule.target)
    for hook in builtin:
        found = _walk(hook, jumps, targets, table)
        if found:
            return found
    return None


def _walk(hook: str, jumps: dict[str, list[str]], targets: dict[str, list[str]],
          table: str) -> str | None:
    """Depth first from a built-in chain: the first loop, too deep chain or misplaced NAT.
    A chain found fine at some level is fine at any lower one, so each is walked once or twice,
    not once per path (recursion stays within MAX_LEVEL + 2)."""
    fine_at: dict[str, int] = {}
    path: list[str] = []

    def visit(chain: str) -> str | None:
        level = len(path)
        if chain in path:
            loop = " → ".join(path[path.index(chain):] + [chain])
            return (f"makes a loop of jumps ({loop}) that {hook} reaches; the kernel refuses it "
                    "(\"Too many links\")")
        if fine_at.get(chain, -1) >= level:
            return None
        path.append(chain)
        try:
            if level > MAX_LEVEL:
                return (f"makes a chain of jumps {level} deep ({' → '.join(path)}); the kernel "
                        f"allows at most {MAX_LEVEL} below a built-in chain (\"Too many links\")")
            for target in targets.get(chain, ()):
                if table == "nat" and hook not in NAT_HOOKS[target]:
                    return (f"-j {target} in chain {chain}, which {hook} reaches "
                            f"({' → '.join(path)}): the kernel allows {target} only below "
                            f"{' and '.join(NAT_HOOKS[target])} (\"Invalid argument\")")
            for target in jumps.get(chain, ()):
                found = visit(target)
                if found:
                    return found
        finally:
            path.pop()
        fine_at[chain] = level
        return None

    return visit(hook)
