"""Autograder bundles: what Gradescope, PrairieLearn and GitHub Classroom each take, from one lab.

Every bundle holds the same payload, `kplab/` (written by bundle.py):

    kplab/assignment.json      the lab directory's name, the exercises, the file names each accepts
    kplab/lab/<lab-id>/        lab.yaml, the chosen exercises and their checks: never solutions/
    kplab/wheels/              the kit as a wheel, and its dependencies where they could be fetched
    kplab/system-packages.txt  the kit's one list of Debian/Ubuntu packages, as it is in the kit
    kplab/install.sh           installs both into /opt/kplab (network: apt; pip only if offline fails)

and runs `python -m lab_runner.autograder.runtime PLATFORM …` to grade (runtime.py): find the
student's file, grade live where the container can (CAP_NET_ADMIN, a writable /proc/sys) and
statically where not, write the platform's results file saying which mode it used.

One module per platform writes what surrounds the payload: gradescope.py (setup.sh,
run_autograder, the zip), prairielearn.py (grader image Dockerfile, info.json, question.html,
server.py), github.py (a template repository with .github/workflows/classroom.yml).
"""

from __future__ import annotations

PLATFORMS = ("gradescope", "prairielearn", "github")
