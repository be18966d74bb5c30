"""Probes that run inside a lab namespace (agent, capture), their launcher, and the statistics that judge them.

    agent     crafted SYNs, socket probes (http/tcp/udp), bursts of new flows: one JSON result
    capture   pod-side packet capture, and `correlate` to find a probe's packet behind NAT
    launch    the caller's side: run those two in a namespace, read their JSON
    stats     chi-square goodness of fit, power and sample size for endpoint selection
    wire      header parsing and checksum arithmetic shared by agent and capture
    minilab   a three-namespace client → node (DNAT) → pod topology for tests and benchmarks

Nothing is imported here, so `python -m lab_runner.probes.agent` starts fast.
"""
