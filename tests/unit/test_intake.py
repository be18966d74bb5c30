"""The intake both grading modes share: what it refuses, with which words, naming which line.

tests/integration/test_intake_vs_kernel.py checks the same edges against the real
iptables-restore; these check the messages and line numbers without root.
"""

from __future__ import annotations

import pytest

from lab_runner.errors import SubmissionError
from lab_runner.grading.submission import as_iptables_restore


def _doc(*rules: str, chains: tuple[str, ...] = ("S", "T")) -> str:
    declared = "".join(f":{chain} - [0:0]\n" for chain in chains)
    return "*nat\n" + declared + "".join(f"{rule}\n" for rule in rules) + "COMMIT\n"


def _refusal(document: str) -> str:
    with pytest.raises(SubmissionError) as caught:
        as_iptables_restore(document, "answer.rules")
    return str(caught.value)


@pytest.mark.parametrize("char, words", [
    ("\r", "CRLF"), ("\x0b", "vertical tab"), ("\x0c", "form feed"), ("\x85", "U+0085"),
    ("\u2028", "U+2028"), ("\u2029", "U+2029"), ("\ufeff", "byte order mark"),
    ("\x1c", "U+001C"), ("\x7f", "U+007F"),
])
def test_line_breaks_and_control_characters_are_refused_on_their_line(char, words):
    document = _doc(f'-A S -m comment --comment "a{char}b" -j RETURN')
    message = _refusal(document)
    assert message.startswith("answer.rules, line 4: ") and words in message


def test_crlf_names_the_first_line_and_says_how_to_fix_it():
    message = _refusal(_doc("-A S -j RETURN").replace("\n", "\r\n"))
    assert message.startswith("answer.rules, line 1: a carriage return") and "dos2unix" in message


def test_lines_are_counted_at_newlines_only():
    # A form feed is a line break to str.splitlines(), not to iptables-restore: counted with
    # splitlines(), the bad rule below would be reported a line too far, and the comment
    # rule would fall apart in two.
    from lab_runner.ruleset.parse import RulesetSyntaxError, parse

    document = '*nat\n:S - [0:0]\n-A S -m comment --comment "a\x0cb" -j RETURN\n-A S -j\nCOMMIT\n'
    with pytest.raises(RulesetSyntaxError, match="line 4: "):
        parse(document)


@pytest.mark.parametrize("rules, chains, words", [
    ((), ("A" * 29,), "at most 28"),
    ((), ("-S",), "starts with '-'"),
    ((), ("ACCEPT",), "a target's name"),
    ((f"-A S -m comment --comment {'c' * 1024} -j RETURN",), ("S",), "Parameter too long"),
    ((f'-A S -m comment --comment "{"c" * 1024}" -j RETURN',), ("S",), "Parameter too long"),
    (("-A S -m comment --comment " + "c" * 10300 + " -j RETURN",), ("S",), "at most 10239 bytes"),
    (("-A S -j DNAT",), ("S",), "-j DNAT needs --to-destination"),
    (("-A S -j MARK",), ("S",), "-j MARK needs one of"),
    (("-A S -m mark -j RETURN",), ("S",), "-m mark needs --mark"),
    (("-A S -m recent --name x -j RETURN",), ("S",), "-m recent needs one of"),
    (("-A S -m statistic --mode nth --every 3 -j RETURN",), ("S",), "--packet P"),
    (("-A S -m statistic --mode nth --every 3 --packet 3 -j RETURN",), ("S",), "from 0 to 2"),
    (("-A S -m statistic --mode random -j RETURN",), ("S",), "needs --probability"),
    (("-A S -j REJECT",), ("S",), "nat table"),
    (("-A S -s 1.2.3.4 -s 1.2.3.5 -j RETURN",), ("S",), "-s given twice"),
    (("-A S -m tcp --dport 80 -j RETURN",), ("S",), "-m tcp needs -p tcp"),
    (("-A S -p tcp -m tcp --dport 0080 -j RETURN",), ("S",), "--dport 0080"),
    (("-A PREROUTING -o eth0 -j RETURN",), (), "-o in PREROUTING"),
    (("-A S -j RETURN # why",), ("S",), "`#` is left over"),
    (("-A S -j RETURN", "-R S 1 -j ACCEPT"), ("S",), "which this file added (line 3)"),
])
def test_what_iptables_restore_refuses_is_refused_with_its_reason(rules, chains, words):
    message = _refusal(_doc(*rules, chains=chains))
    assert message.startswith("answer.rules, line ") and words in message


def test_blanks_before_a_chain_line_are_refused():
    assert "blanks before `:S - [0:0]`" in _refusal("*nat\n\t:S - [0:0]\nCOMMIT\n")


def test_a_long_comment_line_is_read_in_pieces_like_iptables_restore():
    as_iptables_restore("#" * 30000 + "\n" + _doc("-A S -j RETURN"), "answer.rules")
    assert "at most 10239" in _refusal("#" + "x" * 30000 + "\n" + _doc("-A S -j RETURN"))


def _jumps(depth: int, verb: str = "-j") -> str:
    rules = [f"-A PREROUTING {verb} C0"] + [f"-A C{i} {verb} C{i + 1}" for i in range(depth - 1)]
    return _doc(*rules, chains=tuple(f"C{i}" for i in range(depth)))


def test_fifteen_jumps_below_a_builtin_chain_load_and_sixteen_do_not():
    as_iptables_restore(_jumps(15), "answer.rules")
    message = _refusal(_jumps(16))
    assert "line 33: makes a chain of jumps 16 deep" in message and "Too many links" in message
    assert "16 deep" in _refusal(_jumps(16, "-g"))


def test_loops_and_chains_no_builtin_chain_reaches():
    as_iptables_restore(_doc("-A S -j T", "-A T -j S"), "answer.rules")  # never reached: loads
    message = _refusal(_doc("-A PREROUTING -j S", "-A S -j T", "-A T -j S"))
    assert "line 6: makes a loop of jumps (S → T → S)" in message


@pytest.mark.parametrize("rules, line, words", [
    (("-A PREROUTING -j S", "-A S -j SNAT --to-source 1.2.3.4"), 5, "only below POSTROUTING and INPUT"),
    (("-A S -j MASQUERADE", "-A PREROUTING -j S"), 5, "MASQUERADE only below POSTROUTING"),
    (("-A POSTROUTING -j S", "-A S -j DNAT --to-destination 1.2.3.4"), 5, "PREROUTING and OUTPUT"),
    (("-A PREROUTING -j OUTPUT",), 4, "built-in chain OUTPUT"),
])
def test_nat_targets_below_the_wrong_hook_name_the_line_the_kernel_names(rules, line, words):
    message = _refusal(_doc(*rules))
    assert message.startswith(f"answer.rules, line {line}: ") and words in message


def test_numbers_in_a_chain_the_file_flushed_are_refused():
    start = as_iptables_restore(_doc("-A S -j RETURN", chains=("S",)), "<start>")
    for rule in ("-D S 1", "-I S 2 -j LOG", "-D S -j ACCEPT"):
        with pytest.raises(SubmissionError, match="which this file flushed"):
            as_iptables_restore(_doc("-A S -j ACCEPT", rule, chains=("S",)), "answer.rules", start)
    as_iptables_restore("*nat\n-A S -j ACCEPT\n-D S 1\nCOMMIT\n", "answer.rules", start)


@pytest.mark.parametrize("rule", [
    "--append S --protocol tcp --destination 10.104.5.205/255.255.255.255 --match tcp "
    "--destination-port 80 --jump DNAT --to-destination 10.0.0.1:80",
    "-A S -p tcp -j DNAT --to-destination=10.0.0.1:80",
    "-A S -p 6 -m tcp --dport 80 -j RETURN",
    "-A S -p TCP -m tcp --dport 80 -j RETURN",
    "-A S -s 10.0.0.1,10.0.0.2 -j RETURN",
    "-A S -m statistic --mode nth --every 3 --packet 0 -j RETURN",
])
def test_equivalent_spellings_the_kernel_takes_are_taken(rule):
    as_iptables_restore(_doc(rule), "answer.rules")
