"""Walkthrough lessons: parsing, running with a fake execute, marks, pauses and malformed files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from lab_runner.views.kubectl import NotModelled
from lab_runner.walkthrough import (CommandBlock, LessonError, NoSuchStep, Prose, parse,
                                    parse_text, prompt_for, run)

LESSON = '''\
# How a ClusterIP Service works

Intro: a Service is a set of iptables rules.

## 1. Find the Service

First look at the Service and its pods.

```host
kubectl -n stateful-apps get svc
```

```expect
my-app
re: 10\\.104\\.5\\.205\\s+<none>
```

This IP is the entry point.

## 2. Why it works

Pure explanation: no command here. A sample is shown, never run:

```text
Chain KUBE-SERVICES (2 references)
```

## 3. Look at the rules on the node

```node
# the rule for our service
sudo iptables -t nat -L KUBE-SERVICES -v -n \\
    | grep 10.104.5.205
```

```expect
KUBE-SVC-Q7IJ732UBZY4AJKA
```

```pod my-app-7f569f66d9-dfrdh
hostname
```

```expect
my-app-7f569f66d9-dfrdh
```

## 4. Curl from the client

```client
curl -s --max-time 2 http://10.104.5.205:8080/
```

```expect
exit: 0
re: ^hello from my-app-\\w+-\\w+$
```
'''

OUTPUTS = {
    ("host", "kubectl -n stateful-apps get svc"):
        "NAME     TYPE        CLUSTER-IP     EXTERNAL-IP   PORT(S)    AGE\n"
        "my-app   ClusterIP   10.104.5.205   <none>        8080/TCP   5h56m\n",
    ("node", "sudo iptables -t nat -L KUBE-SERVICES -v -n | grep 10.104.5.205"):
        "    0     0 KUBE-SVC-Q7IJ732UBZY4AJKA  tcp  --  *  *  0.0.0.0/0  10.104.5.205  "
        "/* stateful-apps/my-app:http-svc cluster IP */ tcp dpt:8080\n",
    ("pod my-app-7f569f66d9-dfrdh", "hostname"): "my-app-7f569f66d9-dfrdh\n",
    ("client", "curl -s --max-time 2 http://10.104.5.205:8080/"):
        "hello from my-app-7f569f66d9-qtc2q\n",
}


class FakeLab:
    """execute() for tests: canned outputs, every call recorded."""

    def __init__(self, outputs=OUTPUTS, rc: int = 0):
        self.outputs = dict(outputs)
        self.rc = rc
        self.calls: list[tuple[str, str]] = []

    def __call__(self, where: str, command: str) -> tuple[int, str]:
        self.calls.append((where, command))
        return self.rc, self.outputs.get((where, command), "")


class ScriptedInput:
    """input() for tests: answers in order, prompts recorded."""

    def __init__(self, *answers: str):
        self.answers = list(answers)
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if not self.answers:
            raise EOFError
        return self.answers.pop(0)


def console() -> Console:
    return Console(file=io.StringIO(), width=200, color_system=None, record=True)


@pytest.fixture
def lesson_file(tmp_path) -> Path:
    path = tmp_path / "walkthrough.md"
    path.write_text(LESSON)
    return path


def walk(lesson, fake=None, **options):
    out = options.pop("console", None) or console()
    options.setdefault("pause", False)
    result = run(lesson, fake or FakeLab(), console=out, **options)
    return result, out.export_text()


# -- parsing --------------------------------------------------------------------------------------

def test_parse_reads_title_intro_steps_blocks_and_marks(lesson_file):
    lesson = parse(lesson_file)
    assert lesson.title == "How a ClusterIP Service works"
    assert lesson.intro == "Intro: a Service is a set of iptables rules."
    assert [(s.number, s.title) for s in lesson.steps] == [
        (1, "Find the Service"), (2, "Why it works"), (3, "Look at the rules on the node"),
        (4, "Curl from the client")]

    first = lesson.steps[0]
    assert [type(i) for i in first.items] == [Prose, CommandBlock, Prose]
    block = first.blocks[0]
    assert block.where == "host" and block.line == 9
    assert [c.text for c in block.commands] == ["kubectl -n stateful-apps get svc"]
    assert [(str(m), m.regex, m.line) for m in block.marks] == [
        ("my-app", False, 14), (r"re: 10\.104\.5\.205\s+<none>", True, 15)]

    explanation = lesson.steps[1]
    assert explanation.blocks == ()
    assert "Chain KUBE-SERVICES (2 references)" in explanation.items[0].text  # samples stay prose

    node, pod = lesson.steps[2].blocks
    assert node.where == "node" and pod.where == "pod my-app-7f569f66d9-dfrdh"
    # the comment line is skipped; the continuation is one command, shown as written
    assert len(node.commands) == 1
    assert node.commands[0].text.endswith("\\\n    | grep 10.104.5.205")
    assert node.commands[0].to_run == "sudo iptables -t nat -L KUBE-SERVICES -v -n | grep 10.104.5.205"
    assert lesson.steps[3].blocks[0].exit_code == 0


# -- running --------------------------------------------------------------------------------------

def test_run_executes_every_command_where_it_runs_and_shows_it(lesson_file):
    fake = FakeLab()
    result, text = walk(parse(lesson_file), fake,
                        prompts={"node": "docker@minikube:~$ ", "pod": "root@{name}:/# "})
    assert fake.calls == list(OUTPUTS)
    assert result.ok and not result.failed and not result.quit_early
    assert [s.passed for s in result.steps] == [True, True, True, True]
    assert "$ kubectl -n stateful-apps get svc" in text
    assert "docker@minikube:~$ sudo iptables -t nat -L KUBE-SERVICES -v -n \\" in text
    assert "root@my-app-7f569f66d9-dfrdh:/# hostname" in text
    assert "client:~$ curl -s" in text  # the default prompt for a client
    assert "my-app   ClusterIP   10.104.5.205" in text  # the real output is shown
    assert "Step 3/4: Look at the rules on the node" in text
    assert "This IP is the entry point." in text
    step3 = result.steps[2]
    assert step3.output.count("\n") >= 2 and [c.rc for c in step3.commands] == [0, 0]
    assert all(s.seconds >= 0 for s in result.steps)


def test_start_step_skips_the_earlier_steps(lesson_file):
    fake = FakeLab()
    result, text = walk(parse(lesson_file), fake, start_step=3)
    assert [s.number for s in result.steps] == [3, 4]
    assert [where for where, _ in fake.calls] == ["node", "pod my-app-7f569f66d9-dfrdh", "client"]
    assert "Intro: a Service" not in text
    with pytest.raises(NoSuchStep, match="has no step 9; its steps are 1 to 4"):
        walk(parse(lesson_file), fake, start_step=9)


def test_check_fails_a_step_on_a_missing_plain_mark(lesson_file):
    outputs = dict(OUTPUTS)
    outputs[("host", "kubectl -n stateful-apps get svc")] = "No resources found in stateful-apps namespace.\n"
    result, text = walk(parse(lesson_file), FakeLab(outputs), check=True)
    assert not result.ok
    assert [s.number for s in result.failed] == [1]
    # every missing mark of the step is listed, the regex one as written
    assert result.missing == {1: ("my-app", r"re: 10\.104\.5\.205\s+<none>")}
    assert "✗ missing from the output: my-app" in text
    assert "1 of 4 step(s) failed" in text
    assert [s.number for s in result.steps] == [1, 2, 3, 4]  # check goes on to the end


def test_check_fails_a_step_on_a_regex_mark(lesson_file):
    outputs = dict(OUTPUTS)
    # the plain text is there, but not on one line as the pattern (anchored ^…$) demands
    outputs[("client", "curl -s --max-time 2 http://10.104.5.205:8080/")] = \
        "<html>hello from my-app-7f569f66d9-qtc2q</html>\n"
    result, _ = walk(parse(lesson_file), FakeLab(outputs), check=True)
    assert result.missing == {4: (r"re: ^hello from my-app-\w+-\w+$",)}
    assert not result.steps[3].passed and result.steps[2].passed


def test_without_check_a_missing_mark_is_a_warning(lesson_file):
    outputs = dict(OUTPUTS)
    outputs[("pod my-app-7f569f66d9-dfrdh", "hostname")] = "somebody-else\n"
    result, text = walk(parse(lesson_file), FakeLab(outputs), check=False)
    assert result.ok  # the walk itself succeeds
    assert result.missing == {3: ("my-app-7f569f66d9-dfrdh",)}
    assert "warning: missing from the output: my-app-7f569f66d9-dfrdh" in text
    assert "had warnings" in text


def test_an_unexpected_exit_status_fails_under_check(lesson_file):
    result, text = walk(parse(lesson_file), FakeLab(rc=7), check=True)
    assert not result.ok
    assert result.steps[0].bad_exits == ("`kubectl -n stateful-apps get svc` exited 7, expected 0",)
    assert result.steps[1].passed  # the explanation-only step has nothing to fail


def test_a_lab_error_from_execute_becomes_the_output(lesson_file):
    def execute(where, command):
        raise NotModelled("kubectl apply")

    result, text = walk(parse(lesson_file), execute, start_step=1, check=True)
    assert "kubectl apply is not modelled by this lab" in result.steps[0].output
    assert result.steps[0].commands[0].rc == 1
    assert "kubectl apply is not modelled" in text


# -- pausing --------------------------------------------------------------------------------------

def test_pause_waits_for_enter_between_steps(lesson_file):
    answers = ScriptedInput("", "", "")
    result, _ = walk(parse(lesson_file), pause=True, input_fn=answers)
    assert len(result.steps) == 4 and not result.quit_early
    assert len(answers.prompts) == 3  # between steps, not after the last
    assert "step 2. Why it works" in answers.prompts[0]


def test_q_and_enter_quits_early(lesson_file):
    fake = FakeLab()
    answers = ScriptedInput("", " Q ")
    result, text = walk(parse(lesson_file), fake, pause=True, input_fn=answers)
    assert [s.number for s in result.steps] == [1, 2]
    assert result.quit_early
    assert [where for where, _ in fake.calls] == ["host"]  # step 3 never ran
    assert "Stopped after step 2 (2 of 4 steps run)." in text


def test_end_of_input_stops_and_no_pause_never_asks(lesson_file):
    result, _ = walk(parse(lesson_file), pause=True, input_fn=ScriptedInput())
    assert result.quit_early and len(result.steps) == 1

    def never(prompt):
        raise AssertionError("input asked for with pause off")

    result, _ = walk(parse(lesson_file), pause=False, input_fn=never)
    assert len(result.steps) == 4


def test_prompt_lookup_exact_then_kind_then_default():
    prompts = {"node": "docker@{name}:~$ ", "pod my-app-1": "special# "}
    assert prompt_for("node", prompts) == "docker@node:~$ "
    assert prompt_for("node minikube", prompts) == "docker@minikube:~$ "
    assert prompt_for("pod my-app-1", prompts) == "special# "
    assert prompt_for("host", prompts) == "$ "


# -- malformed lessons ----------------------------------------------------------------------------

def problems_of(tmp_path, text: str) -> list[str]:
    path = tmp_path / "walkthrough.md"
    path.write_text(text)
    with pytest.raises(LessonError) as caught:
        parse(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    return [line.strip().removeprefix(f"{path}:") for line in message.splitlines()[1:]]


def test_an_expect_block_needs_a_command_before_it(tmp_path):
    problems = problems_of(tmp_path, "# T\n\n## 1. Step\n\nProse.\n\n```expect\nfoo\n```\n")
    assert problems == ["7: this expect block has no command block before it; put it right "
                        "after the command block whose output it checks"]


def test_unknown_block_kinds_list_the_valid_ones(tmp_path):
    problems = problems_of(tmp_path, "# T\n\n## 1. Step\n\n```bash\nls\n```\n\n```\nls\n```\n")
    assert problems == [
        "5: unknown block kind 'bash'; valid kinds: host, node [NAME], client [NAME], pod NAME, "
        "expect, text, yaml",
        "9: a fenced block must say what it is after the fence; valid kinds: host, node [NAME], "
        "client [NAME], pod NAME, expect, text, yaml",
    ]


def test_every_problem_is_reported_with_its_line(tmp_path):
    text = (
        "Intro without a title.\n"          # 1
        "\n"                                # 2
        "## 1. First\n"                     # 3  (no title before it)
        "```pod\n"                          # 4  pod needs a name
        "hostname\n"                        # 5
        "```\n"                             # 6
        "## 3. Third\n"                     # 7  misnumbered
        "```host\n"                         # 8
        "kubectl get svc\n"                 # 9
        "```\n"                             # 10
        "```expect\n"                       # 11
        "re: ([unclosed\n"                  # 12 bad regex
        "exit: two\n"                       # 13 bad exit status
        "```\n"                             # 14
        "```expect\n"                       # 15 a second expect block
        "x\n"                               # 16
        "```\n"                             # 17
        "## Not numbered\n"                 # 18
        "```node\n"                         # 19
        "\n"                                # 20 (empty block)
        "```\n"                             # 21
        "```client\n"                       # 22 never closed
        "curl x\n"                          # 23
    )
    problems = problems_of(tmp_path, text)
    assert [p.split(":", 1)[0] for p in problems] == [
        "3", "4", "7", "12", "13", "15", "18", "19", "22"]
    assert "needs its '# Title' before the first step" in problems[0]
    assert "a pod block needs exactly one name" in problems[1]
    assert "numbered 3 but it is step 2" in problems[2]
    assert "bad regular expression '([unclosed'" in problems[3]
    assert "'exit:' needs a whole number" in problems[4]
    assert "a second expect block for the command block of line 8" in problems[5]
    assert "must look like '## 3. Step title'" in problems[6]
    assert "has no command in it" in problems[7]
    assert "never closed" in problems[8]


def test_a_lesson_without_title_or_steps(tmp_path):
    assert problems_of(tmp_path, "Just prose.\n") == [
        "1: the lesson needs a title: a first line like '# How a ClusterIP Service works'"]
    assert problems_of(tmp_path, "# T\n\nProse only.\n") == [
        "3: the lesson has no steps; start one with '## 1. Step title'"]
    assert problems_of(tmp_path, "# T\n\n```host\nls\n```\n## 1. S\n")[0] == (
        "3: commands must be inside a step; start one with '## 1. Step title'")


def test_headings_inside_blocks_and_deeper_headings_are_not_steps():
    lesson = parse_text("# T\n\n## 1. S\n\n### Details\n\n```text\n## 2. not a step\n```\n")
    assert len(lesson.steps) == 1
    assert "### Details" in lesson.steps[0].items[0].text
