"""Split one rule's tokens into iptables' basic options, its matches and its target."""

from __future__ import annotations

from dataclasses import dataclass

from lab_runner.ruleset.counters import Counters

# The options that are part of iptables' own "ip" match, with their long spellings.
BASIC_OPTIONS = {"-s": "s", "--source": "s", "--src": "s", "-d": "d", "--destination": "d",
                 "--dst": "d", "-p": "p", "--protocol": "p", "-i": "i", "--in-interface": "i",
                 "-o": "o", "--out-interface": "o", "-f": "f", "--fragment": "f"}


@dataclass(frozen=True)
class Match:
    """One `-m module …` of a rule; `args` are its tokens (with any "!") up to the next option group."""

    module: str
    args: tuple[str, ...] = ()


# Options of the match modules the kit meets, so an option lands in the match that owns it even
# when a basic option sits between (`-m tcp -p tcp -d X --dport 80`), as iptables does.
MODULE_OPTIONS: dict[str, frozenset[str]] = {
    "tcp": frozenset({"--dport", "--sport", "--destination-port", "--source-port", "--tcp-flags",
                      "--syn", "--tcp-option"}),
    "udp": frozenset({"--dport", "--sport", "--destination-port", "--source-port"}),
    "comment": frozenset({"--comment"}),
    "statistic": frozenset({"--mode", "--probability", "--every", "--packet"}),
    "mark": frozenset({"--mark"}),
    "recent": frozenset({"--name", "--set", "--rcheck", "--update", "--remove", "--seconds",
                         "--reap", "--hitcount", "--rttl", "--mask", "--rsource", "--rdest"}),
    "conntrack": frozenset({"--ctstate", "--ctproto", "--ctorigsrc", "--ctorigdst", "--ctreplsrc",
                            "--ctrepldst", "--ctorigsrcport", "--ctorigdstport", "--ctreplsrcport",
                            "--ctrepldstport", "--ctstatus", "--ctexpire", "--ctdir"}),
    "addrtype": frozenset({"--src-type", "--dst-type", "--limit-iface-in", "--limit-iface-out"}),
    "multiport": frozenset({"--dports", "--sports", "--ports", "--destination-ports",
                            "--source-ports"}),
    "state": frozenset({"--state"}),
}


# What each flag token is to the reader: a basic option's key ("s", "d", …), or one of these.
_NOT, _MATCH, _JUMP, _GOTO, _COUNTERS = "!", "-m", "-j", "-g", "-c"
_FLAGS = {**BASIC_OPTIONS, "!": _NOT, "-m": _MATCH, "--match": _MATCH, "-j": _JUMP, "--jump": _JUMP,
          "-g": _GOTO, "--goto": _GOTO, "-c": _COUNTERS, "--set-counters": _COUNTERS}


def read_rule(tokens: list[str]) -> dict:
    """The Rule fields read from the tokens after `-A CHAIN`; ValueError names what is wrong."""
    basic, matches, target, target_args, goto, counters = read_parts(tokens)
    return {"basic": basic, "matches": matches, "target": target, "target_args": target_args,
            "goto": goto, "counters": counters}


def read_parts(tokens: list[str], shared: dict | None = None) -> tuple:
    """read_rule's fields as a tuple: (basic, matches, target, target_args, goto, counters).

    Reads the tokens the way iptables assigns them to matches and target (getopt's
    `--option=value` as `--option value`): a basic option takes
    its value; `-m` opens a match; `-j`/`-g` names the target; a `--option` goes to the match
    that owns it (the target, once -j was read); any other token is a value of the last option.
    One pass with local state: it runs once per rule of documents of 100,000s of rules.
    `shared`, a dict kept across the rules of a document, lets equal matches share one (frozen)
    Match object: fewer objects, less memory.
    """
    basic: list[tuple[str, bool, str]] = []
    matches: list[tuple[str, list[str]]] = []  # (module, args) in order of appearance
    current: list[str] | None = None  # where a value token goes
    target: str | None = None
    target_args: list[str] = []
    goto = False
    counters: Counters | None = None
    flags = _FLAGS
    n, i = len(tokens), 0
    while i < n:
        tok = tokens[i]
        kind = flags.get(tok)
        if kind is None:
            if tok.startswith("--") and "=" in tok:  # getopt's --option=value: two words
                tokens = [*tokens[:i], *tok.split("=", 1), *tokens[i + 1:]]
                n += 1
                continue
            if tok.startswith("--"):
                # A match's option, given to the match that owns it (the target's, once -j was read).
                current = target_args if current is target_args and target is not None \
                    else _owner(tok, matches, basic)
                current.append(tok)
            elif current is not None:
                current.append(tok)
            else:
                raise ValueError(f"{tok!r} is not part of any match or target")
            i += 1
        elif kind is _MATCH:
            if i + 1 >= n:
                raise ValueError(f"option {tok} needs a value")
            current = []
            matches.append((tokens[i + 1], current))
            i += 2
        elif kind is _JUMP or kind is _GOTO:
            if target is not None:
                raise ValueError("a rule can have only one -j/-g target")
            if i + 1 >= n:
                raise ValueError(f"option {tok} needs a value")
            target, goto, current = tokens[i + 1], kind is _GOTO, target_args
            i += 2
        elif kind is _NOT:
            i += 1
            if i >= n or not tokens[i].startswith("-"):
                raise ValueError("'!' must be followed by an option")
            tok = tokens[i]
            key = BASIC_OPTIONS.get(tok)
            if key is None:  # whatever it is, "!" makes it a match's option
                current = target_args if current is target_args and target is not None \
                    else _owner(tok, matches, basic)
                current += ("!", tok)
                i += 1
            elif key == "f":
                basic.append(("f", True, ""))
                i += 1
            elif i + 1 < n:
                basic.append((key, True, tokens[i + 1]))
                i += 2
            else:
                raise ValueError(f"option {tok} needs a value")
        elif kind is _COUNTERS:
            numbers = tokens[i + 1:i + 3]
            if len(numbers) != 2 or not all(t.isdigit() for t in numbers):
                raise ValueError("-c needs two numbers: packets and bytes")
            counters = Counters(int(numbers[0]), int(numbers[1]))
            i += 3
        elif kind == "f":
            basic.append(("f", False, ""))
            i += 1
        elif i + 1 < n:
            basic.append((kind, False, tokens[i + 1]))
            i += 2
        else:
            raise ValueError(f"option {tok} needs a value")
    if shared is None:
        made = [Match(m, tuple(a)) for m, a in matches]
    else:
        made = []
        for module, args in matches:
            match = shared.get(key := (module, *args))
            if match is None:
                match = shared[key] = Match(module, tuple(args))
            made.append(match)
    return tuple(basic), tuple(made), target, tuple(target_args), goto, counters


def _owner(option: str, matches: list[tuple[str, list[str]]],
           basic: list[tuple[str, bool, str]]) -> list[str]:
    """The args of the match an option belongs to, opening tcp/udp's implicit match if needed."""
    for module, args in reversed(matches):
        if option in MODULE_OPTIONS.get(module, ()):
            return args
    proto = next((v.lower() for k, _, v in basic if k == "p"), None)
    proto = {"6": "tcp", "17": "udp"}.get(proto, proto)  # -p 6 --dport 80 loads tcp too
    if proto in ("tcp", "udp") and option in MODULE_OPTIONS[proto]:
        args = []
        matches.append((proto, args))  # iptables' implicit match: -p tcp --dport 80
        return args
    if matches and matches[-1][0] not in MODULE_OPTIONS:
        return matches[-1][1]  # a module the kit does not know: keep its options together
    raise ValueError(f"option {option} is not part of any match: options like --dport need "
                     "`-m tcp -p tcp` (or -m udp -p udp) before them")
