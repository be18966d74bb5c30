"""Grading: exercises, submissions, sandboxes (live or static), checks as pytest tests, results."""
