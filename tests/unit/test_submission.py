"""Submissions as data: every refusal names the file and, where there is one, the line (no root)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from lab_runner.errors import SubmissionError
from lab_runner.grading import exercise as exercises
from lab_runner.grading import submission as submissions
from lab_runner.grading.sandbox import open_sandbox

ROOT = Path(__file__).resolve().parents[2]
BAD = ROOT / "fixtures" / "submissions" / "bad"
BAD_INPUTS = yaml.safe_load((BAD / "expected.yaml").read_text(encoding="utf-8"))
RULE = ("-A KUBE-SERVICES -m tcp -p tcp -d 10.104.5.205/32 --dport 8080 "
        "-j KUBE-SVC-Q7IJ732UBZY4AJKA")


@pytest.fixture(scope="module")
def ex1():
    return exercises.find("lab-3", "1")  # nat KUBE-SERVICES only


@pytest.fixture(scope="module")
def ex3():
    return exercises.find("lab-3", "3")  # nat KUBE-SVC-*


@pytest.fixture(scope="module")
def ex6():
    return exercises.find("lab-3", "6")  # nat KUBE-*


def refused(raw: bytes, exercise, name: str = "answer.rules") -> str:
    with pytest.raises(SubmissionError) as caught:
        submissions.from_bytes(raw, name, exercise)
    return str(caught.value)


# -- the stored bad inputs ------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_read_refuses_each_bad_input_naming_file_and_line(name):
    expected = BAD_INPUTS[name]
    path = BAD / name
    exercise = exercises.find("lab-3", expected["exercise"])
    with pytest.raises(SubmissionError) as caught:
        submissions.read(path, exercise)
    message = str(caught.value)
    assert message.startswith(path.name), message  # the file's name, not where it was graded
    assert expected["error"] in message
    if expected["line"] is not None:
        assert message.startswith(f"{path.name}, line {expected['line']}:"), message
    # from_bytes (what read() ends with) says the same for the same bytes
    assert refused(path.read_bytes(), exercise, path.name) == message


@pytest.mark.parametrize("rule,words", [
    ("-R KUBE-SVC-Q7IJ732UBZY4AJKA 1 -j DROP", "-j DROP in the nat table"),
    ("[5:300] -A KUBE-SEP-TWZJG7ZWZYI5EC7J -j REJECT", "-j REJECT in the nat table"),
    ("-A KUBE-SEP-TWZJG7ZWZYI5EC7J ! -p udp -j DNAT --to 172.17.0.2:80",
     "DNAT to a port needs the protocol"),
    ("-I KUBE-SVC-Q7IJ732UBZY4AJKA 1 -m statistic --mode random --probability 1/3 -j RETURN",
     "--probability 1/3: it must be a decimal number from 0 to 1"),
    ("-A KUBE-SVC-Q7IJ732UBZY4AJKA -m statistic --mode random --probability 1.5 -j RETURN",
     "--probability 1.5"),
    ("-A KUBE-SVC-Q7IJ732UBZY4AJKA -s 172.17.0.300 -j KUBE-MARK-MASQ",
     "'172.17.0.300' is not an IPv4 address or network (-s)"),
    ("-A KUBE-SERVICES -d my-app.stateful-apps.svc -j KUBE-SVC-Q7IJ732UBZY4AJKA",
     "is not an IPv4 address or network (-d)"),
])
def test_reading_refuses_what_the_kernel_refuses(ex6, rule, words):
    """Valid iptables-restore text that the kernel would refuse: refused while reading, so
    neither mode builds anything for it and both give the same message."""
    message = refused(f"*nat\n# fix\n{rule}\nCOMMIT\n".encode(), ex6, "fix.rules")
    assert message.startswith("fix.rules, line 3: ") and words in message
    assert message.endswith(f"\n    {rule}")


def test_reading_accepts_what_the_kernel_accepts(ex6):
    text = ("*nat\n"
            "-A KUBE-SEP-TWZJG7ZWZYI5EC7J -m tcp -p tcp -j DNAT --to-destination 172.17.0.2:80\n"
            "-A KUBE-SEP-TWZJG7ZWZYI5EC7J -j DNAT --to-destination 172.17.0.2\n"
            "-I KUBE-SVC-Q7IJ732UBZY4AJKA 2 -m statistic --mode random --probability 1 "
            "-s 172.17.0.0/16 -j RETURN\nCOMMIT\n")
    submission = submissions.from_bytes(text.encode(), "ok.rules", ex6)
    # Applied on the starting state as iptables-restore would: appended after the exercise's
    # two KUBE-SEP rules, inserted as the service chain's second rule.
    sep = [r.text for r in submission.ruleset.chain("nat", "KUBE-SEP-TWZJG7ZWZYI5EC7J").rules]
    assert sep[2:] == text.splitlines()[1:3]
    svc = submission.ruleset.chain("nat", "KUBE-SVC-Q7IJ732UBZY4AJKA").rules
    assert svc[1].text == text.splitlines()[3] and svc[1].target == "RETURN"
    assert open_sandbox("static", ex6, submission).rules_now() is submission.ruleset


# -- read(): the file itself ------------------------------------------------------------------

def test_read_refuses_a_file_over_the_size_limit(tmp_path, ex1):
    path = tmp_path / "huge.rules"
    path.write_text("*nat\n" + (RULE + "\n") * (ex1.max_bytes // len(RULE) + 1) + "COMMIT\n")
    with pytest.raises(SubmissionError) as caught:
        submissions.read(path, ex1)
    assert str(caught.value) == (f"huge.rules: more than {ex1.max_bytes} bytes, the limit for a "
                                 "submission")


def test_read_accepts_a_file_at_the_size_limit(tmp_path, ex1):
    body = f"*nat\n{RULE}\nCOMMIT\n"
    path = tmp_path / "exact.rules"
    path.write_text(body + "#" * (ex1.max_bytes - len(body) - 1) + "\n")
    assert path.stat().st_size == ex1.max_bytes
    assert submissions.read(path, ex1).ruleset.chain("nat", "KUBE-SERVICES").rules


def test_read_refuses_links_directories_and_missing_files(tmp_path, ex1):
    real = tmp_path / "real.rules"
    real.write_text(f"*nat\n{RULE}\nCOMMIT\n")
    link = tmp_path / "link.rules"
    os.symlink(real, link)
    for path in (link, tmp_path, tmp_path / "missing.rules"):
        with pytest.raises(SubmissionError, match="not a regular file") as caught:
            submissions.read(path, ex1)
        assert str(caught.value).startswith(path.name)


# -- from_bytes(): the text ---------------------------------------------------------------------

def test_empty_and_blank_files_are_refused(ex1):
    for raw in (b"", b"\n\n", b"  \t\n"):
        assert refused(raw, ex1) == ("answer.rules: the file is empty; submit the rules in "
                                     "iptables-restore format (what `iptables-save` prints)")


def test_binary_data_is_refused_at_its_line(ex1):
    assert refused(b"*nat\n\nCOMMIT\x00\n", ex1).startswith("answer.rules, line 3: binary data")


def test_non_utf8_is_refused_at_its_line(ex1):
    message = refused(b"*nat\n# caf\xe9\nCOMMIT\n", ex1)
    assert message == "answer.rules, line 2: not UTF-8 text (byte 0xe9 at offset 10)"


def test_control_characters_are_refused_at_their_line(ex1):
    raw = f"*nat\n{RULE}\n-A KUBE-SERVICES \x1b[31m-j RETURN\nCOMMIT\n".encode()
    assert refused(raw, ex1) == "answer.rules, line 3: control characters are not allowed"


@pytest.mark.parametrize("text,line,words", [
    ("*nat\n-A KUBE-SERVICES --dport 8080 -p tcp -j RETURN\nCOMMIT\n", 2,
     "option --dport is not part of any match"),
    ("*nat\n" + RULE + "\n", 1, "missing COMMIT"),
    ("*nat\n-A KUBE-SERVICES -m comment --comment \"open -j RETURN\nCOMMIT\n", 2,
     "unbalanced quotes"),
    ("-A KUBE-SERVICES -j RETURN\n", 1, "comes before any `*table` line"),
    ("*nat\n-A KUBE-NOPE -j RETURN\nCOMMIT\n", 2, "chain KUBE-NOPE is not declared"),
    ("*nat\n-A KUBE-SERVICES -j KUBE-SVC-NOPE\nCOMMIT\n", 2, "jumps to 'KUBE-SVC-NOPE'"),
    ("*nat\n-E KUBE-SERVICES KUBE-OLD\nCOMMIT\n", 2, "unknown command '-E'"),
])
def test_syntax_errors_name_their_line(ex1, text, line, words):
    message = refused(text.encode(), ex1)
    assert message.startswith(f"answer.rules, line {line}: "), message
    assert words in message


def test_a_valid_submission_is_applied_on_the_starting_state(ex1):
    done = submissions.from_bytes(f"# mine\n*nat\n{RULE}\nCOMMIT\n".encode(), "answer.rules", ex1)
    chain = done.ruleset.chain("nat", "KUBE-SERVICES")
    assert chain.rules[-1].target == "KUBE-SVC-Q7IJ732UBZY4AJKA"
    assert len(chain.rules) == 2  # kube-proxy's nodeports rule from the starting state, and ours


def test_declaring_a_chain_rewrites_it_whole(ex6):
    text = ("*nat\n:KUBE-SVC-Q7IJ732UBZY4AJKA - [0:0]\n"
            "-A KUBE-SVC-Q7IJ732UBZY4AJKA -j KUBE-SEP-TWZJG7ZWZYI5EC7J\nCOMMIT\n")
    done = submissions.from_bytes(text.encode(), "fix.rules", ex6)
    assert [r.target for r in done.ruleset.chain("nat", "KUBE-SVC-Q7IJ732UBZY4AJKA").rules] == \
        ["KUBE-SEP-TWZJG7ZWZYI5EC7J"]
    assert len(done.ruleset.chain("nat", "KUBE-SEP-XCVGJ5SWPGOUASPD").rules) == 2  # untouched


# -- confine(): the tables and chains an exercise opens -----------------------------------------

def confined(text: str, exercise) -> str:
    with pytest.raises(SubmissionError) as caught:
        submissions.confine(text, "answer.rules", exercise)
    return str(caught.value)


@pytest.mark.parametrize("which, accepted, refused_line", [
    # ex1 opens KUBE-SERVICES: the same rule in a KUBE-SVC chain is refused.
    ("ex1", f"# a comment\n\n*nat\n{RULE}\nCOMMIT\n",
     "-A KUBE-SVC-Q7IJ732UBZY4AJKA -j KUBE-SEP-X"),
    # ex3 opens KUBE-SVC-*: KUBE-SERVICES is not its to write.
    ("ex3", "*nat\n-A KUBE-SVC-Q7IJ732UBZY4AJKA -j KUBE-SEP-X\n-F KUBE-SVC-ABC\nCOMMIT\n", RULE),
    # ex6 opens every KUBE- chain (counters in front too), never a built-in one.
    ("ex6", "*nat\n:KUBE-SERVICES - [0:0]\n-I KUBE-SEP-Y 1 -j KUBE-MARK-MASQ\n"
            "[3:180] -A KUBE-SVC-Q7IJ732UBZY4AJKA -j RETURN\nCOMMIT\n",
     "-A PREROUTING -j KUBE-SERVICES"),
])
def test_confine_accepts_the_chains_the_exercise_opens_and_no_other(request, which, accepted,
                                                                    refused_line):
    exercise = request.getfixturevalue(which)
    assert submissions.confine(accepted, "a.rules", exercise) is None  # no refusal
    # The same document with one line more, in a chain the exercise does not open, is refused
    # at that line: confine looks at every line, not at the first.
    lines = accepted.splitlines()
    lines.insert(len(lines) - 1, refused_line)
    message = confined("\n".join(lines) + "\n", exercise)
    assert message.startswith(f"answer.rules, line {len(lines) - 1}: ") and \
        refused_line.split()[1] in message


def test_confine_refuses_a_table_the_exercise_does_not_open(ex1):
    assert confined("*nat\nCOMMIT\n*filter\n-A INPUT -j ACCEPT\nCOMMIT\n", ex1) == (
        "answer.rules, line 3: table 'filter' is not part of this exercise; write only in: nat")


@pytest.mark.parametrize("line", [
    "-A KUBE-SVC-Q7IJ732UBZY4AJKA -j RETURN",
    "-I PREROUTING 1 -j RETURN",
    ":KUBE-SEP-NEW - [0:0]",
    "-N KUBE-SEP-NEW",
    "-X KUBE-SVC-Q7IJ732UBZY4AJKA",
    "-F KUBE-MARK-MASQ",
    "[0:0] -A KUBE-POSTROUTING -j RETURN",
])
def test_confine_refuses_a_chain_the_exercise_does_not_open(ex1, line):
    message = confined(f"*nat\n{RULE}\n{line}\nCOMMIT\n", ex1)
    assert message.startswith("answer.rules, line 3: chain "), message
    assert message.endswith("is not part of this exercise; write only in: KUBE-SERVICES")


def test_confine_globs_match_the_whole_name(ex3):
    message = confined("*nat\n-A KUBE-SEP-TWZJG7ZWZYI5EC7J -j RETURN\nCOMMIT\n", ex3)
    assert "chain 'KUBE-SEP-TWZJG7ZWZYI5EC7J' in table 'nat'" in message
    assert message.endswith("write only in: KUBE-SVC-*")


@pytest.mark.parametrize("command", ["-F", "--flush", "-X", "-Z"])
def test_confine_refuses_a_command_without_a_chain(ex6, command):
    message = confined(f"*nat\n{command}\nCOMMIT\n", ex6)
    assert message == (f"answer.rules, line 2: `{command}` without a chain acts on every chain "
                       "of table 'nat'; name the chain")


def test_a_rule_the_tracer_cannot_model_is_refused_for_both_modes_with_its_line(ex1):
    message = refused(b"*nat\n-I KUBE-SERVICES 1 -p tcp -m string --string GET --algo bm -j RETURN"
                      b"\nCOMMIT\n", ex1)
    assert message.startswith("answer.rules, line 2: the kit cannot model -m string")
    assert "neither grading mode" in message


def test_the_intake_reads_lines_as_iptables_restore_does(ex1):
    crlf = f"*nat\r\n{RULE}\r\nCOMMIT\r\n".encode()
    assert refused(crlf, ex1).startswith("answer.rules, line 1: a carriage return")
    separator = f'*nat\n{RULE} -m comment --comment "a\u2028b"\nCOMMIT\n'.encode()
    assert "line 2: a Unicode line separator (U+2028)" in refused(separator, ex1)


def test_kernel_refusals_come_before_any_sandbox(ex6):
    loop = b"*nat\n-A KUBE-SERVICES -j KUBE-MARK-MASQ\n-A KUBE-MARK-MASQ -j KUBE-SERVICES\nCOMMIT\n"
    assert "makes a loop of jumps" in refused(loop, ex6)
