"""`python -m lab_runner`: the same as the `lab-runner` command."""

from lab_runner.cli import main

main()
