"""lab-runner: kube-proxy's ClusterIP chain set on a real kernel, in network namespaces.

Kept free of imports so the small programs started inside namespaces (the pod app server,
the probe agent) start fast.
"""

PREFIX = "kplab"
__version__ = "0.1.0"
