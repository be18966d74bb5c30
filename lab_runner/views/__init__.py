"""Read-only views of a lab, printed the way the real tools print them (kubectl for now)."""

from lab_runner.views.kubectl import KubectlError, NotFound, NotModelled, kubectl

__all__ = ["KubectlError", "NotFound", "NotModelled", "kubectl"]
