"""Benchmark: the docker backend. Node image build from a warm cache (unchanged, and after a code
change), `up`/`down` of lab-3 in a node container, and one forwarded command's round trip.

Needs a Docker engine (DOCKER_HOST honoured) with the node image on it; prints why it skips
otherwise. Builds with the base image in KPLAB_BASE (as the image was built) so the cache is hit,
and removes every image it built.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

from lab_runner import lab_file  # noqa: E402
from lab_runner.backends import docker  # noqa: E402
from lab_runner.errors import EnvironmentProblem  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
TAG = "kplab-node:bench"
IGNORE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "reports", "build")


def build_args() -> dict[str, str]:
    import os

    return {"BASE": os.environ.get("KPLAB_BASE", "debian:bookworm-slim"),
            "EXTRA_CA_CERTS": extra_ca_certs()}


def extra_ca_certs() -> str:
    """As .ci/docker.sh passes them, `$(cat /usr/local/share/ca-certificates/*.crt)`: the same
    text, so that the build cache is hit."""
    folder = Path("/usr/local/share/ca-certificates")
    return "".join(p.read_text() for p in sorted(folder.glob("*.crt"))).rstrip("\n")


def timed_build(client, context: Path) -> float:
    start = time.perf_counter()
    client.images.build(path=str(context), tag=TAG, network_mode="host", forcerm=True, rm=True,
                        buildargs=build_args())
    return time.perf_counter() - start


def main() -> None:
    try:
        client = docker.engine()
    except EnvironmentProblem as exc:
        print(f"docker: skipped ({exc})")
        return
    image = docker.image_name()
    if not docker.has_image(image):
        print(f"docker: skipped (no image {image}: `docker build -t {image} .` or .ci/docker.sh)")
        return
    try:
        with tempfile.TemporaryDirectory(prefix="kplab-bench-") as tmp:
            context = Path(tmp) / "kit"  # a snapshot: edits made meanwhile do not count
            shutil.copytree(ROOT, context, ignore=IGNORE)
            timed_build(client, context)  # the kit's layer as it is now, on the cached ones
            warm = timed_build(client, context)
            init = context / "lab_runner" / "__init__.py"
            init.write_text(init.read_text() + f"# bench {time.time()}\n")
            changed = timed_build(client, context)
    finally:
        client.images.remove(TAG, force=True)
        for dangling in client.images.list(filters={"dangling": True}):
            client.images.remove(dangling.id, force=True)  # only the bench's own build is dangling
    print(f"docker image build (warm cache): unchanged {warm:.2f} s | after a code change "
          f"{changed:.2f} s (only the kit's layer is rebuilt)")

    model = lab_file.load("lab-3")
    ups, downs, execs = [], [], []
    for _ in range(RUNS):
        start = time.perf_counter()
        run = docker.up(model, "lab-3")
        ups.append(time.perf_counter() - start)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "lab_runner", "exec", "--lab", run.run_id, "node",
                        "--", "true"], cwd=ROOT, check=True)
        execs.append(time.perf_counter() - start)
        start = time.perf_counter()
        problems = docker.destroy(run)
        downs.append(time.perf_counter() - start)
        assert not problems, problems
    print(f"lifecycle (lab-3, docker, {RUNS} runs): up median {statistics.median(ups):.2f} s "
          f"(min {min(ups):.2f}, max {max(ups):.2f}) | down median {statistics.median(downs):.2f} s"
          f" | `lab-runner exec … -- true` on the run: median {statistics.median(execs):.2f} s")


if __name__ == "__main__":
    main()
