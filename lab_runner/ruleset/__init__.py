"""kube-proxy's exact chain set: names, rendering, parsing, comparison and tracing of rulesets."""
