#!/usr/bin/env bash
# CI, after `make test`: the docker backend and docker-compose.yml, on a private Docker engine.
#
# The engine changes nothing on the host: no bridge, no iptables rule, no ip_forward
# (--bridge=none --iptables=false --ip6tables=false --ip-masq=false --ip-forward=false); its data
# and exec roots, socket and key live in a temporary directory, removed at the end with the engine
# stopped. No registry is reachable, so the base image is made with debootstrap and `docker import`.
# The host's network is compared before the engine starts and after it is gone.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
step() { printf '\n== docker: %s (at %ss)\n' "$*" "$(( $(date +%s) - started ))"; }

step "packages: docker.io, debootstrap, docker-compose"
missing=""
for tool in dockerd docker debootstrap docker-compose; do
  command -v "$tool" >/dev/null 2>&1 || missing=1
done
if [ -n "$missing" ]; then
  # The package's scripts must not start Docker's own service: it would add docker0 and rules.
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    docker.io debootstrap docker-compose >/dev/null
  if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

make -s venv
PY=.venv/bin/python
work=$(mktemp -d /tmp/kplab-ci-docker.XXXXXX)
engine="$work/engine"
mkdir -p "$engine"
"$PY" -c 'import json; from lab_runner import hostcheck; print(json.dumps(hostcheck.snapshot()))' \
  > "$work/host-before.json"

export DOCKER_HOST="unix://$engine/docker.sock"
dockerd_pid=""
stop_engine() {
  if [ -n "$dockerd_pid" ] && kill -0 "$dockerd_pid" 2>/dev/null; then
    docker ps -aq | xargs -r docker rm -f >/dev/null 2>&1 || true  # this engine holds only ours
    kill -TERM "$dockerd_pid"
    for _ in $(seq 1 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 1; done
    kill -KILL "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
  fi
  dockerd_pid=""
  findmnt -rn -o TARGET | grep -F "$engine" | sort -r | xargs -r -n1 umount -l || true
}
finish() {
  rc=$?
  if [ "$rc" != 0 ] && [ -f "$engine/dockerd.log" ]; then tail -20 "$engine/dockerd.log"; fi
  stop_engine
  rm -rf "$work"
  exit "$rc"
}
trap finish EXIT

step "private engine at $DOCKER_HOST"
printf '{"deprecated-key-path": "%s/key.json"}\n' "$engine" > "$engine/daemon.json"
dockerd --config-file "$engine/daemon.json" --data-root "$engine/data" --exec-root "$engine/exec" \
  -H "$DOCKER_HOST" --pidfile "$engine/dockerd.pid" \
  --iptables=false --ip6tables=false --ip-masq=false --ip-forward=false --bridge=none \
  > "$engine/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 1 60); do docker version >/dev/null 2>&1 && break; sleep 1; done
docker version --format 'engine {{.Server.Version}} (API {{.Server.APIVersion}})'

step "base image: debootstrap --variant=minbase bookworm, docker import"
mirror=$(sed -n 's|^URIs: *\(http[^ ]*/debian\)/*$|\1|p' /etc/apt/sources.list.d/debian.sources \
  2>/dev/null | head -1)
mirror=${KPLAB_DEBIAN_MIRROR:-${mirror:-http://deb.debian.org/debian}}
debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log"; exit 1; }
tar -C "$work/rootfs" -c . | docker import - kplab-base:bookworm >/dev/null
rm -rf "$work/rootfs"
export KPLAB_BASE=kplab-base:bookworm

step "fresh machine: a bare bookworm container, the kit from git archive HEAD, make setup test-deps (network)"
# The README's promise on a fresh Debian: the user installs make, then `sudo make lab-3` and
# `sudo make test` do all set-up. Only this step has a network (the engine's host network, for
# apt and PyPI; the host's CA bundle for a proxy that re-signs TLS); the next runs with none, so
# the test-only packages (chromium) that `make test` would install are installed here too.
fresh=kplab-ci-fresh-$$
git archive --format=tar HEAD | docker run -i --name "$fresh" --network host \
  -v /etc/ssl/certs/ca-certificates.crt:/run/host-ca.pem:ro -e PIP_CERT=/run/host-ca.pem \
  -e DEBIAN_FRONTEND=noninteractive "$KPLAB_BASE" sh -ec '
    mkdir /kit && tar -C /kit -x
    apt-get update -qq && apt-get install -y -qq make python3 >/dev/null
    cd /kit && make setup test-deps' > "$work/fresh-setup.log" 2>&1 \
  || { tail -30 "$work/fresh-setup.log"; docker rm -f "$fresh" >/dev/null; exit 1; }
grep -E "installing (system|test-only) packages|setting up" "$work/fresh-setup.log" || true
docker commit "$fresh" "$fresh:set-up" >/dev/null
docker rm "$fresh" >/dev/null

step "fresh machine: make lab-3, then make test, with no network (network_mode: none)"
docker run --rm --init --network none --cap-add NET_ADMIN --cap-add NET_RAW --cap-add SYS_ADMIN \
  --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
  --security-opt systempaths=unconfined -w /kit "$fresh:set-up" bash -ec '
    s=$(date +%s); make lab-3 > /tmp/lab-3.log 2>&1 || { tail -40 /tmp/lab-3.log; exit 1; }
    tail -3 /tmp/lab-3.log; echo "make lab-3: $(( $(date +%s) - s )) s"
    s=$(date +%s); make test; echo "make test: $(( $(date +%s) - s )) s"' \
  || { docker rmi "$fresh:set-up" >/dev/null; exit 1; }
docker rmi "$fresh:set-up" >/dev/null

step "node image: docker build --network host"
# EXTRA_CA_CERTS: the host's own CAs, for a proxy that re-signs TLS on the way to PyPI.
docker build -q --network host --force-rm -t kplab-node --build-arg BASE="$KPLAB_BASE" \
  --build-arg EXTRA_CA_CERTS="$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true)" .

step "tests: docker backend, lab-3 on both backends, walkthrough and solutions in containers, compose"
KPLAB_REQUIRE_DOCKER=1 .venv/bin/pytest -q tests/integration/test_docker.py tests/integration/test_autograder_platforms.py \
  tests/integration/test_zz_host_untouched.py

step "bench"
"$PY" bench/bench_docker.py 3

step "nothing left on the engine"
left=$(docker ps -aq; docker images -q --filter dangling=true;
       docker network ls --format '{{.Name}}' | grep -v -x -e host -e none || true)
if [ -n "$left" ]; then echo "left on the engine: $left"; exit 1; fi

step "engine stopped; its files removed; the host's network as before"
stop_engine
if ps -eo args= | grep -F "$engine" | grep -v -F grep; then
  echo "engine processes remain"; exit 1
fi
"$PY" -c 'import json, sys
from lab_runner import hostcheck
diff = hostcheck.differences(json.load(open(sys.argv[1])), hostcheck.snapshot())
print("\n".join(diff) or "host network namespace unchanged"); sys.exit(1 if diff else 0)' \
  "$work/host-before.json"
step "done"
