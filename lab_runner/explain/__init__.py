"""`lab-runner explain`: a real node's iptables-save, read offline: its Services and one packet's fate.

    dump.py      the file: checks it is an IPv4 kube-proxy iptables-save, parses it
    services.py  every Service port kube-proxy wrote, with its addresses and endpoint shares
    packet.py    one new connection through the rules (the kit's tracer, minus what it cannot model)
    report.py    both answers as text (80-column tables) or JSON
"""
