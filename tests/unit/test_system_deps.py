"""The one list of system packages: every reader uses it, and it names everything the kit runs."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lab_runner import system_deps

ROOT = Path(__file__).resolve().parents[2]
STANDARD_DIRS = os.pathsep.join(["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin",
                                 "/sbin", "/bin"])
# Words at the head of a list in the kit's code that are not programs the kit runs, or programs
# deliberately left out of the list, with the reason.
NOT_FROM_THE_LIST = {
    "docker": "the docker backend's engine: installed on its own (README, 'Without root: Docker')",
    "node": "a lab role (`iptables node -- …`), not Node.js",
    "route": "a word of `ip route …` argument lists",
    "link": "a word of `ip link …` argument lists",
    "write": "a column of lab 8's table (`(\"write s\", …)` in lab_runner/scale/report.py)",
}


def list_heads() -> dict[str, str]:
    """The first word of every list or tuple of strings in lab_runner/, with where it is."""
    heads = {}
    for path in sorted((ROOT / "lab_runner").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
                first = node.elts[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value:
                    word = first.value.split()[0]
                    heads.setdefault(word, f"{path.relative_to(ROOT)}:{node.lineno}")
    return heads


def essential(word: str) -> bool:
    """Whether a Debian package every installation has (Essential or Priority required) ships it.

    Asked by `bin/NAME`, as the merged /usr gives one program several paths.
    """
    owners = subprocess.run(["dpkg", "-S", f"bin/{word}"], capture_output=True, text=True)
    for line in owners.stdout.splitlines():
        packages, _, path = line.partition(": ")
        if os.path.basename(path) != word:
            continue
        for package in packages.split(", "):
            fields = subprocess.run(["dpkg-query", "-W", "-f", "${Essential} ${Priority}",
                                     package.split(":")[0]], capture_output=True, text=True)
            if {"yes", "required"} & set(fields.stdout.split()):
                return True
    return False


def test_the_list_reads_and_every_package_provides_something():
    packages = system_deps.packages()
    names = [p.name for p in packages]
    assert len(names) == len(set(names)), f"a package is listed twice: {names}"
    # scapy compiles the pods' capture filters with libpcap: the package the fresh machine lacked.
    assert system_deps.provider("lib", "pcap") == "libpcap0.8"
    for program in ("ip", "iptables-nft", "iptables-legacy", "conntrack", "xtables-monitor",
                    "nsenter", "unshare", "sysctl", "nft", "make"):
        assert system_deps.provider("cmd", program), f"{program} is named by no package"


@pytest.mark.skipif(not shutil.which("dpkg"), reason="tells essential packages apart with dpkg")
def test_chromium_is_a_test_only_package_no_user_is_asked_for():
    """The browser check of report.html needs chromium; labs, the node image, autograder bundles
    and doctor do not, and read its "#test:" line as a comment."""
    assert system_deps.provider("cmd", "chromium") == "chromium"
    assert [p.name for p in system_deps.packages(tests=True)] == ["chromium"]
    assert "chromium" not in {p.name for p in system_deps.packages()}
    assert "iproute2" not in {p.name for p in system_deps.packages(tests=True)}
    # What the Dockerfile, the Makefile's fallback and install.sh take: sed 's/#.*//' | awk.
    plain = {line.split("#", 1)[0].split()[0] for line in system_deps.LIST.read_text().splitlines()
             if line.split("#", 1)[0].split()}
    assert plain == {p.name for p in system_deps.packages()}


def test_doctor_does_not_ask_for_test_only_packages(monkeypatch):
    from lab_runner import doctor

    monkeypatch.setattr(system_deps.Provision, "where", lambda self: None)
    assert all("chromium" not in f.what and "chromium" not in f.fix
               for f in doctor.check_system_packages())


@pytest.fixture
def use_list(tmp_path, monkeypatch):
    """Makes system_deps read a list with the given text instead of the kit's."""
    def use(text: str) -> None:
        fake = tmp_path / "system-packages.txt"
        fake.write_text(text)
        monkeypatch.setattr(system_deps, "LIST", fake)
        for reader in (system_deps.every_package, system_deps.packages):
            monkeypatch.setattr(reader, "__defaults__", (fake,))
    return use


def test_missing_tests_names_only_test_only_packages(use_list, capsys):
    use_list("kplab-lab-only  cmd:kplab-no-such-program\n"
             "#test: kplab-test-only  cmd:kplab-no-such-browser  # why\n")
    assert system_deps.main(["system_deps.py", "missing", "--tests"]) == 0
    assert capsys.readouterr().out.split() == ["kplab-test-only"]
    assert system_deps.main(["system_deps.py", "missing"]) == 0
    assert capsys.readouterr().out.split() == ["kplab-lab-only"]
    assert system_deps.main(["system_deps.py", "missing", "--all"]) == 2


def test_every_program_the_kit_runs_comes_from_a_listed_package():
    listed = {p.name for package in system_deps.packages() for p in package.provides
              if p.kind == "cmd"}
    unlisted = []
    for word, where in list_heads().items():
        if word in listed or word in NOT_FROM_THE_LIST:
            continue
        program = shutil.which(word, path=STANDARD_DIRS)
        if program and not essential(word):
            unlisted.append(f"{word} ({where}, {program})")
    assert not unlisted, ("programs the kit runs that lab_runner/system-packages.txt does not "
                          "name: " + ", ".join(unlisted))


def test_makefile_ci_and_dockerfile_install_from_the_list():
    makefile = (ROOT / "Makefile").read_text()
    assert "PACKAGE_LIST := lab_runner/system-packages.txt" in makefile
    assert "system_deps.py missing" in makefile
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY lab_runner/system-packages.txt" in dockerfile
    ci = (ROOT / ".ci/run").read_text()
    assert "make setup" in ci
    # make test installs the test-only packages; CI's fresh machine must get them while it has
    # a network, as its `make test` runs with none.
    assert re.search(r"^test: setup test-deps$", makefile, re.M)
    assert "system_deps.py missing --tests" in makefile
    fresh = (ROOT / ".ci/docker.sh").read_text()
    assert "make setup test-deps'" in fresh and "--network none" in fresh
    packages = {p.name for p in system_deps.packages()}
    for name, text in (("Makefile", makefile), ("Dockerfile", dockerfile), (".ci/run", ci)):
        for line in re.findall(r"apt-get install[^\n]*(?:\\\n[^\n]*)*", text):
            words = set(re.findall(r"(?<![-\w$/])[a-z][a-z0-9.+-]*[a-z0-9]", line))
            hard_coded = (words & packages) - {"make", "python3"}  # .ci/run's bootstrap of make
            assert not hard_coded, f"{name} names packages beside the list: {sorted(hard_coded)}"


def test_missing_names_a_package_whose_program_is_absent(use_list, capsys):
    use_list("# comment\niproute2  cmd:ip\nkplab-nothing  cmd:kplab-no-such-program "
             "lib:kplab-no-such-library\n")
    assert system_deps.main(["system_deps.py", "missing"]) == 0
    assert capsys.readouterr().out.split() == ["kplab-nothing"]
    (missing,) = system_deps.missing_packages()
    assert [str(p) for p in missing.missing()] == ["cmd:kplab-no-such-program",
                                                   "lib:kplab-no-such-library"]


def test_sbin_tools_are_found_off_path(monkeypatch, tmp_path):
    """An ordinary user's PATH often lacks /usr/sbin, where Debian puts ip and iptables."""
    monkeypatch.setenv("PATH", str(tmp_path))
    found = system_deps.find_tool("iptables-legacy")
    assert found and found.startswith(system_deps.SBIN)
    assert system_deps.find_tool("kplab-no-such-program") is None


@pytest.mark.parametrize("line, message", [
    ("iproute2", "package iproute2 says nothing it provides"),
    ("iproute2 ip", "'ip' is not kind:name"),
    ("iproute2 exe:ip", "'exe:ip' is not kind:name"),
])
def test_a_malformed_line_is_named(tmp_path, line, message):
    bad = tmp_path / "system-packages.txt"
    bad.write_text(f"# first\n{line}\n")
    with pytest.raises(ValueError, match=f"system-packages.txt, line 2: {re.escape(message)}"):
        system_deps.packages(bad)


def test_doctor_reports_each_provision_with_the_package_to_install(monkeypatch):
    from lab_runner import doctor

    monkeypatch.setattr(system_deps.Provision, "where",
                        lambda self: None if self.name == "pcap" else "/somewhere")
    findings = {f.what: f for f in doctor.check_system_packages()}
    assert findings["library pcap"].ok is False
    assert findings["library pcap"].fix.endswith("apt-get install -y libpcap0.8")
    assert findings["tool conntrack"].ok is True
