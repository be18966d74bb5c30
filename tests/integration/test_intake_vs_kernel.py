"""The kit's intake against the real iptables-restore: on each edge case both accept or both refuse.

Each document is restored into a fresh network namespace (`unshare -n`: never the host's) and
read by submission.as_iptables_restore, the intake both grading modes share. Where the kit is
stricter on purpose (characters that would make lines mean different things to Python and to
iptables-restore), the case says so and the test checks that the kernel still accepts it, so the
list notices when either side changes.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from lab_runner.errors import SubmissionError
from lab_runner.grading.submission import as_iptables_restore
from lab_runner.ruleset.parse import parse
from tests.strategies.edits import edit_lists, edited, lab3_nat_document

pytestmark = pytest.mark.needs_root


def _doc(*rules: str, table: str = "nat", chains: tuple[str, ...] = ("S", "T")) -> str:
    declared = "".join(f":{chain} - [0:0]\n" for chain in chains)
    return f"*{table}\n{declared}" + "".join(f"{rule}\n" for rule in rules) + "COMMIT\n"


def _jumps(depth: int) -> str:
    chains = tuple(f"C{i}" for i in range(depth))
    rules = ["-A PREROUTING -j C0"] + [f"-A C{i} -j C{i + 1}" for i in range(depth - 1)]
    return _doc(*rules, chains=chains)


LONG = "c" * 1023
TOO_LONG = "c" * 1024
# (name, document, kit refuses on purpose although the kernel accepts)
CASES = [
    ("plain", _doc("-A PREROUTING -j S", "-A S -p tcp -j DNAT --to-destination 10.0.0.1:80"), False),
    ("long-options", _doc("--append S --protocol tcp --destination 10.104.5.205/255.255.255.255 "
                          "--match tcp --dport 80 --jump DNAT --to-destination 10.0.0.1:80"), False),
    ("option-equals", _doc("-A S -p tcp -j DNAT --to-destination=10.0.0.1:80"), False),
    ("protocol-number", _doc("-A S -p 6 -m tcp --dport 80 -j RETURN"), False),
    ("protocol-number-implicit-match", _doc("-A S -p 6 --dport 80 -j RETURN"), False),
    ("protocol-upper", _doc("-A S -p TCP -m tcp --dport 80 -j RETURN"), False),
    ("address-list", _doc("-A S -s 10.0.0.1,10.0.0.2 -j RETURN"), False),
    ("inverted-address-list", _doc("-A S ! -d 10.0.0.1,10.0.0.2 -j RETURN"), False),
    ("inverted-single-address", _doc("-A S ! -s 10.0.0.1/32 -j RETURN"), False),
    ("inverted-source-and-address-list",
     _doc("-A S -d 10.0.0.1,10.0.0.2 ! -s 10.244.0.0/16 -j RETURN"), False),
    ("inverted-every-source", _doc("-A S ! -s 0.0.0.0/0 -j RETURN"), False),
    ("inverted-every-destination-netmask", _doc("-A S ! -d 10.1.2.3/0.0.0.0 -j RETURN"), False),
    ("every-source", _doc("-A S -s 0.0.0.0/0 -j RETURN"), False),
    ("inverted-half-of-the-addresses", _doc("-A S ! -s 0.0.0.0/1 -j RETURN"), False),
    ("inverted-source-and-one-address", _doc("-A S -d 10.0.0.1 ! -s 10.244.0.0/16 -j RETURN"),
     False),
    ("input-interface-below-postrouting", _doc("-A POSTROUTING -j S", "-A S -i eth0 -j RETURN"),
     False),
    ("dnat-address-and-port-range",
     _doc("-A S -p tcp -j DNAT --to-destination 10.0.0.1-10.0.0.9:80-90"), False),
    ("addrtype-unicast", _doc("-A S -m addrtype --dst-type UNICAST -j RETURN"), False),
    ("addrtype-unknown-type", _doc("-A S -m addrtype --dst-type SOMETIMES -j RETURN"), False),
    ("crlf", _doc("-A S -j RETURN").replace("\n", "\r\n"), False),
    ("vertical-tab-in-comment", _doc('-A S -m comment --comment "a\x0bb" -j RETURN'), True),
    ("line-separator-in-comment", _doc('-A S -m comment --comment "a\u2028b" -j RETURN'), True),
    ("next-line-in-comment", _doc('-A S -m comment --comment "a\x85b" -j RETURN'), True),
    ("chain-name-28", _doc(chains=("A" * 28,)), False),
    ("chain-name-29", _doc(chains=("A" * 29,)), False),
    ("chain-name-dash", _doc(chains=("-S",)), False),
    ("chain-name-accept", _doc(chains=("ACCEPT",)), False),
    ("word-1023", _doc(f"-A S -m comment --comment {LONG} -j RETURN"), False),
    ("word-1024", _doc(f"-A S -m comment --comment {TOO_LONG} -j RETURN"), False),
    ("quoted-word-1024", _doc(f'-A S -m comment --comment "{TOO_LONG}" -j RETURN'), False),
    ("comment-300", _doc(f"-A S -m comment --comment {'c' * 300} -j RETURN"), False),
    ("recent-name-250", _doc(f"-A S -m recent --set --name {'r' * 250}"), False),
    ("line-10239", _doc("-A S" + " -m comment --comment " + "c" * (10239 - 35) + " -j RETURN"),
     False),
    ("line-10240", _doc("-A S" + " -m comment --comment " + "c" * (10240 - 35) + " -j RETURN"),
     False),
    ("long-comment-line", "#" * 30000 + "\n" + _doc("-A S -j RETURN"), False),
    ("depth-15", _jumps(15), False),
    ("depth-16", _jumps(16), False),
    ("deep-but-unreferenced", _doc(*[f"-A C{i} -j C{i + 1}" for i in range(19)],
                                   chains=tuple(f"C{i}" for i in range(20))), False),
    ("loop", _doc("-A PREROUTING -j S", "-A S -j T", "-A T -j S"), False),
    ("loop-unreferenced", _doc("-A S -j T", "-A T -j S"), False),
    ("self-loop", _doc("-A PREROUTING -j S", "-A S -j S"), False),
    ("goto-depth-16", _jumps(16).replace("-j C", "-g C"), False),
    ("jump-to-builtin", _doc("-A PREROUTING -j OUTPUT"), False),
    ("snat-below-prerouting", _doc("-A PREROUTING -j S", "-A S -j SNAT --to-source 1.2.3.4"),
     False),
    ("snat-below-postrouting", _doc("-A POSTROUTING -j S", "-A S -j SNAT --to-source 1.2.3.4"),
     False),
    ("masquerade-below-prerouting", _doc("-A S -j MASQUERADE", "-A PREROUTING -j S"), False),
    ("masquerade-in-input", _doc("-A INPUT -j MASQUERADE"), False),
    ("dnat-below-postrouting", _doc("-A POSTROUTING -j S", "-A S -j DNAT --to-destination 1.2.3.4"),
     False),
    ("dnat-without-option", _doc("-A S -j DNAT"), False),
    ("snat-without-option", _doc("-A S -j SNAT"), False),
    ("mark-without-option", _doc("-A S -j MARK"), False),
    ("mark-match-without-option", _doc("-A S -m mark -j RETURN"), False),
    ("recent-without-action", _doc("-A S -m recent --name x -j RETURN"), False),
    ("nth-without-packet", _doc("-A S -m statistic --mode nth --every 3 -j RETURN"), False),
    ("nth-packet-too-big", _doc("-A S -m statistic --mode nth --every 3 --packet 3 -j RETURN"),
     False),
    ("nth", _doc("-A S -m statistic --mode nth --every 3 --packet 0 -j RETURN"), False),
    ("random-without-probability", _doc("-A S -m statistic --mode random -j RETURN"), False),
    ("reject-in-nat", _doc("-A S -j REJECT"), False),
    ("drop-in-nat", _doc("-A S -j DROP"), False),
    ("two-sources", _doc("-A S -s 1.2.3.4 -s 1.2.3.5 -j RETURN"), False),
    ("two-protocols", _doc("-A S -p tcp -p udp -j RETURN"), False),
    ("tcp-without-protocol", _doc("-A S -m tcp --dport 80 -j RETURN"), False),
    ("port-leading-zero", _doc("-A S -p tcp -m tcp --dport 0080 -j RETURN"), False),
    ("output-interface-in-prerouting", _doc("-A PREROUTING -o eth0 -j RETURN"), False),
    ("output-interface-below-prerouting", _doc("-A PREROUTING -j S", "-A S -o eth0 -j RETURN"),
     False),
    ("trailing-hash-comment", _doc("-A S -j RETURN # why"), False),
    ("indented-chain-line", "*nat\n\t:S - [0:0]\nCOMMIT\n", False),
    ("indented-rule", "*nat\n:S - [0:0]\n   -A S -j RETURN\nCOMMIT\n", False),
    ("table-trailing-blank", "*nat \n:S - [0:0]\nCOMMIT\n", False),
    ("dnat-to-port-without-protocol", _doc("-A S -j DNAT --to-destination 1.2.3.4:80"), False),
    ("dnat-without-port", _doc("-A S -j DNAT --to-destination 1.2.3.4"), False),
    ("insert-delete", "*nat\n-A S -j ACCEPT\n-I S 1 -j MARK --set-mark 1\n-D S -j ACCEPT\n"
                      "-D S 1\nCOMMIT\n", False),
    ("delete-by-rule-after-flush", _doc("-A S -j RETURN", "-D S -j RETURN"), False),
    # In a chain the file flushed, iptables-nft still counts the flushed rules when numbering
    # (-D S 1 meets a rule already gone; -I S 2 lands first): the kit refuses the numbers.
    ("delete-by-number-after-flush", _doc("-A S -j ACCEPT", "-D S 1"), False),
    ("delete-by-number-unflushed", "*nat\n-A S -j ACCEPT\n-D S 1\nCOMMIT\n", False),
    ("insert-at-2-after-flush", _doc("-A S -j ACCEPT", "-I S 2 -j LOG"), True),
    ("replace-a-rule-added-here", _doc("-A S -j RETURN", "-R S 1 -j ACCEPT"), False),  # crashes
    ("replace-a-starting-rule", "*nat\n-I S 1 -j MARK --set-mark 1\n-R S 2 -j ACCEPT\nCOMMIT\n",
     False),
    ("replace-a-starting-rule-added-here", "*nat\n-A S -j ACCEPT\n-R S 2 -j RETURN\nCOMMIT\n",
     False),
]
# Applied first, as the exercise's starting state is, for the cases that name chain S alone.
START = "*nat\n:S - [0:0]\n-A S -j RETURN\nCOMMIT\n"


def _kernel_refuses(document: str, tool: str = "iptables-restore") -> str | None:
    """iptables-restore's complaint (or its exit status) in a fresh network namespace, after
    the starting state; None when it loads the document."""
    script = f"{tool} < \"$1\" && {tool} --noflush < \"$2\""
    with tempfile.TemporaryDirectory() as tmp:
        start, case = Path(tmp, "start.rules"), Path(tmp, "case.rules")
        start.write_text(START)
        case.write_bytes(document.encode())
        done = subprocess.run(["unshare", "-n", "sh", "-c", script, "sh", start, case],
                              capture_output=True, timeout=30)
    if done.returncode == 0:
        return None
    return done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"


def _kit_refuses(document: str) -> str | None:
    try:
        as_iptables_restore(document, "case.rules", parse(START, "<starting state>"))
    except SubmissionError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("name, document, kit_stricter", CASES, ids=[c[0] for c in CASES])
def test_intake_refuses_exactly_what_iptables_restore_refuses(name, document, kit_stricter):
    kernel, kit = _kernel_refuses(document), _kit_refuses(document)
    if kit_stricter:
        assert kernel is None and kit is not None, (kernel, kit)
        return
    assert (kernel is None) == (kit is None), f"kernel: {kernel}\nkit: {kit}"


@pytest.mark.parametrize("name, document", [c[:2] for c in CASES], ids=[c[0] for c in CASES])
def test_what_iptables_legacy_refuses_the_intake_refuses_too(name, document):
    """The kit follows iptables-nft, the labs' default. iptables-legacy takes a few files nft
    refuses (jumps 16 deep, a chain named -S, numbers in a flushed chain, -R of a rule just
    added), so with --iptables legacy the kit is stricter there, but never more lenient."""
    if _kernel_refuses(document, "iptables-legacy-restore") is not None:
        assert _kit_refuses(document) is not None


# -- generated: student-like edits of lab 3's nat table (issue 20) ------------------------------

LAB3 = lab3_nat_document()


@settings(max_examples=int(os.environ.get("KPLAB_INTAKE_EXAMPLES", "150")),
          deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(edit_lists())
def test_generated_variants_are_refused_by_the_intake_exactly_when_iptables_restore_refuses(edits):
    document = edited(LAB3, edits).text
    kernel, kit = _kernel_refuses(document), _kit_refuses(document)
    assert (kernel is None) == (kit is None), f"kernel: {kernel}\nkit: {kit}\n{edits}"
