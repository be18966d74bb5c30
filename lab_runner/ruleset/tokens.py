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


def read_rule(tokens: list[str]) -> dict:
    """The Rule fields read from the tokens after `-A CHAIN`; ValueError names what is wrong."""
    return _RuleReader(tokens).read()


class _RuleReader:
    """Reads `-A CHAIN`'s remaining tokens the way iptables assigns them to matches and target."""

    def __init__(self, tokens: list[str]):
        self.tokens = tokens
        self.i = 0
        self.basic: list[tuple[str, bool, str]] = []
        self.matches: list[list] = []  # [module, args] in order of appearance
        self.current: list | None = None  # where a value token goes
        self.target: str | None = None
        self.target_args: list[str] = []
        self.goto = False
        self.counters: Counters | None = None

    def value(self, option: str) -> str:
        if self.i + 1 >= len(self.tokens):
            raise ValueError(f"option {option} needs a value")
        return self.tokens[self.i + 1]

    def read(self) -> dict:
        while self.i < len(self.tokens):
            self.step(self.tokens[self.i])
        return {"basic": tuple(self.basic),
                "matches": tuple(Match(m, tuple(a)) for m, a in self.matches),
                "target": self.target, "target_args": tuple(self.target_args), "goto": self.goto,
                "counters": self.counters}

    def step(self, tok: str) -> None:
        nxt = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else None
        if tok == "!":
            if nxt is None or not nxt.startswith("-"):
                raise ValueError("'!' must be followed by an option")
            if nxt in BASIC_OPTIONS:
                self.i += 1
                self.basic_option(nxt, invert=True)
            else:
                self.i += 1
                self.module_option(nxt, invert=True)
        elif tok in BASIC_OPTIONS:
            self.basic_option(tok, invert=False)
        elif tok in ("-m", "--match"):
            self.matches.append([self.value(tok), []])
            self.current = self.matches[-1][1]
            self.i += 2
        elif tok in ("-j", "--jump", "-g", "--goto"):
            if self.target is not None:
                raise ValueError("a rule can have only one -j/-g target")
            self.target, self.goto = self.value(tok), tok in ("-g", "--goto")
            self.current = self.target_args
            self.i += 2
        elif tok in ("-c", "--set-counters"):
            found = self.tokens[self.i + 1:self.i + 3]
            if len(found) != 2 or not all(t.isdigit() for t in found):
                raise ValueError("-c needs two numbers: packets and bytes")
            self.counters = Counters(int(found[0]), int(found[1]))
            self.i += 3
        elif tok.startswith("--"):
            self.module_option(tok, invert=False)
        elif self.current is not None:
            self.current.append(tok)
            self.i += 1
        else:
            raise ValueError(f"{tok!r} is not part of any match or target")

    def basic_option(self, tok: str, invert: bool) -> None:
        key = BASIC_OPTIONS[tok]
        if key == "f":
            self.basic.append(("f", invert, ""))
            self.i += 1
        else:
            self.basic.append((key, invert, self.value(tok)))
            self.i += 2

    def module_option(self, tok: str, invert: bool) -> None:
        """Give the option to the match that owns it (the target's, once -j was read)."""
        if self.current is self.target_args and self.target is not None:
            owner = self.target_args
        else:
            owner = self.owner(tok)
        if invert:
            owner.append("!")
        owner.append(tok)
        self.current = owner
        self.i += 1

    def owner(self, option: str) -> list:
        for module, args in reversed(self.matches):
            if option in MODULE_OPTIONS.get(module, ()):
                return args
        proto = next((v.lower() for k, _, v in self.basic if k == "p"), None)
        if proto in ("tcp", "udp") and option in MODULE_OPTIONS[proto]:
            self.matches.append([proto, []])  # iptables' implicit match: -p tcp --dport 80
            return self.matches[-1][1]
        if self.matches and self.matches[-1][0] not in MODULE_OPTIONS:
            return self.matches[-1][1]  # a module the kit does not know: keep its options together
        raise ValueError(f"option {option} is not part of any match: options like --dport need "
                         "`-m tcp -p tcp` (or -m udp -p udp) before them")
