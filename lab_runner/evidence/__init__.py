"""Evidence from a running lab: probes, counters, conntrack, kernel traces, flow sampling."""
