"""Backends realise a lab model: `netns` (namespaces on this machine) and `docker` (the node as a
container, the namespaces inside it)."""
