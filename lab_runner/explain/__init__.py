"""`lab-runner explain`: a real node's kube-proxy rules, read offline: its Services and one packet's fate.

iptables mode (`iptables-save`):
    dump.py          the file: checks it is an IPv4 kube-proxy iptables-save, parses it
    services.py      every Service port kube-proxy wrote, with its addresses and endpoint shares
    packet.py        one new connection through the rules (the kit's tracer, minus what it cannot model)
    report.py        both answers as text (80-column tables) or JSON
nftables mode (`nft list ruleset`, `nft list table ip kube-proxy`, or the kit's `add …` form):
    nft_dump.py      tells an nft listing from iptables-save; checks it holds `table ip kube-proxy`
    nft_services.py  the Service ports of its maps (service-ips, service-nodeports), numgen shares
    nft_packet.py    one new connection through nft_tracer, as packet.py's Explanation
    nft_report.py    the --to answer with nft's steps (the summary prints through report.py)
"""
