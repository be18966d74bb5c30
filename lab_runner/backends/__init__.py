"""Backends realise a lab model: `netns` (namespaces on this machine) and, later, `docker`."""
