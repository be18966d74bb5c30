# The lab node as a container, the way kind and minikube run Kubernetes nodes. The kit runs inside
# it and makes the node, the pods and the clients as network namespaces of the container's own, so
# nothing outside the container changes. Run it with docker-compose.yml, or with
# `lab-runner up LAB --backend docker`; it needs NET_ADMIN, NET_RAW and SYS_ADMIN, not --privileged.
#
#   docker build -t kplab-node .
#   docker build -t kplab-node --network host --build-arg BASE=kplab-base:bookworm .
#
# BASE is any Debian bookworm image; where no registry is reachable, make one with
# `debootstrap --variant=minbase bookworm DIR` and `tar -C DIR -c . | docker import - kplab-base:bookworm`.
# The build fetches Debian packages and the kit's PyPI dependencies; the running node needs no network.
ARG BASE=debian:bookworm-slim
FROM ${BASE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPYCACHEPREFIX=/tmp/kplab-pycache \
    VENV=/opt/kplab \
    PATH=/opt/kplab/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# The system packages: the kit's one list (lab_runner/system-packages.txt), as `make setup` installs it.
COPY lab_runner/system-packages.txt /tmp/system-packages.txt
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
      $(sed -e 's/#.*//' /tmp/system-packages.txt | awk 'NF {print $1}') >/dev/null \
 && rm -rf /var/lib/apt/lists/* /tmp/system-packages.txt

# The kit writes sysctls (ip_forward) in the namespaces it makes, so /proc/sys must be writable.
# `--security-opt systempaths=unconfined` does that, but docker-compose v1 cannot pass it: where
# /proc/sys is still read-only, the entrypoint remounts it read-write (SYS_ADMIN, apparmor
# unconfined), in the container's own mount namespace.
RUN printf '%s\n' '#!/bin/sh' \
      'if grep -q " /proc/sys proc ro," /proc/self/mounts; then' \
      '  mount -o remount,rw,bind /proc/sys || echo "kplab-node: /proc/sys stays read-only: run with --cap-add SYS_ADMIN --security-opt apparmor=unconfined" >&2' \
      'fi' \
      '# the venv is complete, whatever the date of a mounted pyproject.toml (see below)' \
      'touch /opt/kplab/.installed 2>/dev/null' \
      'exec "$@"' > /usr/local/bin/kplab-node-entrypoint \
 && chmod 755 /usr/local/bin/kplab-node-entrypoint
ENTRYPOINT ["/usr/local/bin/kplab-node-entrypoint"]

# The kit's dependencies in their own layer, keyed on pyproject.toml alone: a change to the kit's
# code rebuilds only the last, offline layer.
COPY pyproject.toml /kit/pyproject.toml
# PEM text of extra CA certificates for pip (a proxy that re-signs TLS); used only in this step.
ARG EXTRA_CA_CERTS=""
RUN set -e; python3 -m venv /opt/kplab; \
    if [ -n "$EXTRA_CA_CERTS" ]; then \
      printf '%s\n' "$EXTRA_CA_CERTS" | cat /etc/ssl/certs/ca-certificates.crt - > /tmp/ca.pem; \
      export PIP_CERT=/tmp/ca.pem; \
    fi; \
    python3 -c 'import tomllib; t = tomllib.load(open("/kit/pyproject.toml", "rb")); \
      print("\n".join(t["project"]["dependencies"] + t["build-system"]["requires"] + ["wheel"]))' \
      > /tmp/requirements.txt; \
    /opt/kplab/bin/pip install -q --no-cache-dir --disable-pip-version-check -r /tmp/requirements.txt; \
    rm -f /tmp/ca.pem /tmp/requirements.txt

# The kit itself, editable: with the repository mounted over /kit (docker-compose.yml) the mounted
# code is what runs. `.installed` tells the Makefile the venv is complete (the entrypoint renews
# its date: the container has no network to reinstall when a mounted pyproject.toml is newer).
COPY . /kit
RUN /opt/kplab/bin/pip install -q --no-cache-dir --disable-pip-version-check --no-deps \
      --no-build-isolation -e /kit \
 && touch /opt/kplab/.installed \
 && lab-runner --version

WORKDIR /kit
CMD ["bash"]
