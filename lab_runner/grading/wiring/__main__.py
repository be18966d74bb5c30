"""`python -m lab_runner.grading.wiring LAB FILE -e N [--static] [--json]`: grade one wiring submission."""

from __future__ import annotations

from lab_runner.errors import LabError
from lab_runner.grading.wiring import grade


def main(argv: list[str] | None = None) -> int:
    """Grade one submission and print the result; exit 0 only for full marks."""
    import argparse

    from rich.console import Console

    from lab_runner.grading import formats

    parser = argparse.ArgumentParser(prog="python -m lab_runner.grading.wiring",
                                     description="grade a wiring submission (`ip` commands)")
    parser.add_argument("lab")
    parser.add_argument("submission")
    parser.add_argument("-e", "--exercise", required=True)
    parser.add_argument("--static", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead")
    args = parser.parse_args(argv)
    try:
        result = grade(args.lab, args.exercise, args.submission, "static" if args.static else "live")
    except LabError as exc:
        Console(stderr=True).print(f"error: {exc}", markup=False, highlight=False)
        return 1
    if args.json:
        import json

        print(json.dumps(result.to_dict(), indent=1))
    else:
        formats.terminal(result, Console())
    return 0 if not result.error and result.score == result.max_score else 1


if __name__ == "__main__":
    raise SystemExit(main())
