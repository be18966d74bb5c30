"""Lab 8's scale sweep: kube-proxy's iptables and nftables rulesets for N Services on a real kernel.

    model.py        the N x E lab (pure), one endpoint changed, kube-proxy's partial-sync documents
    stats.py        medians and percentiles of latency samples (pure)
    topology.py     the throw-away client -> node -> pods namespaces a sweep point runs in
    listener.py     the pods' one listener (run inside the pods namespace)
    firstpacket.py  SYN -> SYN-ACK times from kernel timestamps (run inside the client namespace)
    sweep.py        one point per (mode, N): write, partial and full sync, memory, first packet
    report.py       the table (text, JSON), the plot (PNG) and an HTML page
"""
