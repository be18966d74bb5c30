"""Compare two nftables tables as data (nft_parse's model): chains, rules, sets, maps, elements.

The render (`add …` commands) and the kernel's listing (`nft list table`) spell one rule
differently (`mark set mark or 0x4000` is listed as `meta mark set meta mark | 0x00004000`);
nft_parse reads both into the same statements, so rules are compared by their statements and
shown by their text. Differences are listed by chain, set, map and element.
"""

from __future__ import annotations

from lab_runner.ruleset.nft_model import Chain, NamedSet, Table


def differences(expected: Table | None, actual: Table | None, *,
                expected_name: str = "the render", actual_name: str = "the node") -> list[str]:
    """One line per difference between two tables ([] when equal as rules)."""
    if expected is None or actual is None:
        if expected is actual:
            return []
        return _only("table", "", expected, expected_name, actual_name)
    found: list[str] = []
    for name in _union(expected.chains, actual.chains):
        found += _chain(name, expected.chains.get(name), actual.chains.get(name),
                        expected_name, actual_name)
    for name in _union(expected.sets, actual.sets):
        found += _set(name, expected.sets.get(name), actual.sets.get(name),
                      expected_name, actual_name)
    return found


def _union(first: dict, second: dict) -> list[str]:
    return list(first) + [name for name in second if name not in first]


def _only(kind: str, name: str, expected, expected_name: str, actual_name: str) -> list[str]:
    where, missing = (expected_name, actual_name) if expected is not None else \
        (actual_name, expected_name)
    return [f"{kind}{' ' if name else ''}{name}: only in {where} (not in {missing})"]


def _chain(name: str, want: Chain | None, got: Chain | None, want_name: str,
           got_name: str) -> list[str]:
    if want is None or got is None:
        return _only("chain", name, want, want_name, got_name)
    found = []
    spec_want = (want.type, want.hook, want.priority, want.policy if want.base else None)
    spec_got = (got.type, got.hook, got.priority, got.policy if got.base else None)
    if spec_want != spec_got:
        found.append(f"chain {name}: type/hook/priority/policy {spec_want} in {want_name}, "
                     f"{spec_got} in {got_name}")
    wanted = [r.statements for r in want.rules]
    held = [r.statements for r in got.rules]
    if wanted == held:
        return found
    for number in range(1, max(len(wanted), len(held)) + 1):
        a = want.rules[number - 1] if number <= len(wanted) else None
        b = got.rules[number - 1] if number <= len(held) else None
        if a is None or b is None or a.statements != b.statements:
            found.append(f"chain {name} rule {number}: {_text(a)} in {want_name}, "
                         f"{_text(b)} in {got_name}")
            break  # after the first, the rest are shifted: one line says where they part
    if len(wanted) != len(held):
        found.append(f"chain {name}: {len(wanted)} rule(s) in {want_name}, {len(held)} in "
                     f"{got_name}")
    return found


def _text(rule) -> str:
    return f"`{rule.text}`" if rule is not None else "no rule"


def _set(name: str, want: NamedSet | None, got: NamedSet | None, want_name: str,
         got_name: str) -> list[str]:
    if want is None or got is None:
        return _only((want or got).kind, name, want, want_name, got_name)
    found = []
    spec_want = (want.kind, want.key_type, want.data_type, tuple(sorted(want.flags)))
    spec_got = (got.kind, got.key_type, got.data_type, tuple(sorted(got.flags)))
    if spec_want != spec_got:
        found.append(f"{want.kind} {name}: type {spec_want} in {want_name}, {spec_got} in "
                     f"{got_name}")
    elements_want = {(e.key, e.value) for e in want.elements}
    elements_got = {(e.key, e.value) for e in got.elements}
    for key, value in sorted(elements_want - elements_got, key=repr):
        found.append(f"{want.kind} {name} element {_element(key, value)}: only in {want_name}")
    for key, value in sorted(elements_got - elements_want, key=repr):
        found.append(f"{want.kind} {name} element {_element(key, value)}: only in {got_name}")
    return found


def _element(key: tuple[str, ...], value) -> str:
    text = " . ".join(key)
    if value is None:
        return text
    if hasattr(value, "kind"):
        value = value.kind + (f" {value.target}" if value.target else "")
    return f"{text} : {value}"
