"""PrairieLearn: the external grader's image definition, the question's files, and results.json."""

from __future__ import annotations

import html
import json
import re
import uuid
from pathlib import Path

from lab_runner.autograder import bundle
from lab_runner.autograder.runtime import hints_text
from lab_runner.grading import formats

TIMEOUT = 120  # seconds PrairieLearn gives the grader: static grading takes a few

DOCKERFILE = """# PrairieLearn external grader for {lab} exercise(s) {numbers}, made by `lab-runner autograder`.
# Build and push it where your PrairieLearn fetches images, under the name info.json gives:
#   docker build -t {image} . && docker push {image}
# Any Debian or Ubuntu base with Python >= 3.11 (or Ubuntu 22.04, which gets python3.11) will do.
ARG BASE=ubuntu:24.04
FROM ${{BASE}}
COPY kplab /kplab
RUN bash /kplab/install.sh && rm -rf /var/lib/apt/lists/*
# PrairieLearn runs info.json's entrypoint with /grade/student (the files) and /grade/results.
RUN printf '%s\\n' '#!/bin/sh' 'export PYTHONDONTWRITEBYTECODE=1' \\
      'exec /opt/kplab/bin/python -m lab_runner.autograder.runtime prairielearn \\
        --assignment /kplab/assignment.json --submission /grade/student \\
        --results /grade/results/results.json' > /kplab/run-grader \\
 && chmod 755 /kplab/run-grader
"""

SERVER_PY = '''"""{title}: graded by the external grader (the image in info.json), so there is nothing to
compute here. The student's file arrives as {name} through question.html's <pl-file-editor>."""


def generate(data):
    # One fixed task per lab exercise: no parameters to draw.
    pass
'''


def write(assignment: bundle.Assignment, out: Path, *, image: str = "",
          wheels: str = "all") -> list[Path]:
    """out/grader/ (Dockerfile + kplab/) and one question directory per exercise in out/questions/."""
    image = image or f"kplab-grader-{assignment.lab_id}:ex" + "-".join(
        ex.number for ex in assignment.exercises)
    grader = out / "grader"
    grader.mkdir(parents=True, exist_ok=True)
    bundle.write_payload(assignment, grader, wheels=wheels)
    (grader / "Dockerfile").write_text(DOCKERFILE.format(
        lab=assignment.lab_id, numbers=", ".join(ex.number for ex in assignment.exercises),
        image=image))
    written = [grader]
    alone = len(assignment.exercises) == 1
    for ex in assignment.exercises:
        question = out / "questions" / ex.slug
        question.mkdir(parents=True, exist_ok=True)
        name = bundle.accepted_names(ex, alone)[0]
        info = {"uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"kplab:{assignment.lab_id}:{ex.slug}")),
                "title": f"{assignment.lab_id} exercise {ex.number}: {ex.title}",
                "topic": "Kubernetes Services", "tags": ["kplab", assignment.lab_id],
                "type": "v3", "singleVariant": True, "gradingMethod": "External",
                "externalGradingOptions": {"enabled": True, "image": image,
                                           "entrypoint": "/kplab/run-grader", "timeout": TIMEOUT}}
        (question / "info.json").write_text(json.dumps(info, indent=2) + "\n")
        (question / "question.html").write_text(question_html(ex, name))
        (question / "server.py").write_text(SERVER_PY.format(title=ex.title, name=name))
        written.append(question)
    return written


def question_html(ex, file_name: str) -> str:
    """The task, hints and checks for the student, an editor holding the starter file, and the
    grader's results. Everything from the exercise file is escaped."""
    hints = "".join(f"<details><summary>Hint {i}</summary><p>{_inline(h)}</p></details>\n"
                    for i, h in enumerate(ex.hints, 1))
    checks = "".join(f"<li>{c.points} pt: {html.escape(c.title)}</li>\n" for c in ex.checks)
    return (f"<pl-question-panel>\n<h3>Exercise {html.escape(ex.number)}: {html.escape(ex.title)}</h3>\n"
            f"{_blocks(ex.task)}\n{hints}<p>What is checked ({ex.max_score} points):</p>\n"
            f"<ul>\n{checks}</ul>\n</pl-question-panel>\n\n"
            f'<pl-file-editor file-name="{html.escape(file_name)}" ace-mode="ace/mode/text">'
            f"{html.escape(bundle.starter_text(ex))}</pl-file-editor>\n\n"
            "<pl-submission-panel>\n  <pl-external-grader-results></pl-external-grader-results>\n"
            "  <pl-file-preview></pl-file-preview>\n</pl-submission-panel>\n")


def _blocks(text: str) -> str:
    """The task's paragraphs as <p>, its indented examples as <pre>."""
    out = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.splitlines()
        if all(line.startswith("    ") for line in lines):
            out.append("<pre>" + html.escape("\n".join(line[4:] for line in lines)) + "</pre>")
        else:
            out.append(f"<p>{_inline(block)}</p>")
    return "\n".join(out)


def _inline(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def results(spec: dict, graded: list | None, mode: str, reason: str, seconds: float) -> dict:
    """PrairieLearn's results.json: the kit's format (formats.prairielearn), exercises combined,
    the mode said in the message. A grader failure is not gradable (no attempt is used up)."""
    if graded is None:
        return {"gradable": False, "score": 0.0, "message": reason, "format_errors": [reason],
                "tests": []}
    parts = [formats.prairielearn(r) for r in graded]
    total = sum(r.max_score for r in graded)
    data = {"gradable": all(p["gradable"] for p in parts),
            "score": sum(r.score for r in graded) / total if total else 0.0,
            "message": "\n".join([f"graded {reason}", *(p["message"] for p in parts)]),
            "output": "\n\n".join([*(p["output"] for p in parts), hints_text(spec, graded)]).strip(),
            "tests": [t for p in parts for t in p["tests"]]}
    errors = [e for p in parts for e in p.get("format_errors", [])]
    if errors:
        data["format_errors"] = errors
    return data
