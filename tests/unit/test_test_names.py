"""Test files have unique names: the test folders are not packages, so pytest imports each file
by its base name, and two files of one name stop the whole run at collection."""

from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_two_test_files_share_a_name():
    names = Counter(p.name for folder in ("tests", "labs") for p in (ROOT / folder).rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
