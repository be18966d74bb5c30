"""pytest plugin: lab fixtures for checks and tests (filled in by the grading layer)."""
