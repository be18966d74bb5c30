"""Argument types the commands share: each checks its value while the command line is read, before
any run is looked up or any lab is built, and names the valid form when it refuses one."""

from __future__ import annotations

import ipaddress

import click

from lab_runner.ruleset.render import PROFILES

TARGET_FORM = "IP:PORT[/tcp|/udp], e.g. 10.104.5.205:8080/tcp"


class TargetType(click.ParamType):
    """`--to IP:PORT[/tcp|/udp]`: an IPv4 address and a port 1-65535 (the probe agent's domain)."""

    name = "IP:PORT[/PROTO]"

    def convert(self, value, param, ctx):
        from lab_runner.evidence.probing import Target

        if isinstance(value, Target):
            return value
        try:
            target = Target.parse(value)
        except ValueError:
            self.fail(f"{value!r} is not {TARGET_FORM}", param, ctx)
        try:
            ipaddress.IPv4Address(target.ip)
        except ValueError:
            self.fail(f"{target.ip!r} in {value!r} is not an IPv4 address (four numbers 0-255: "
                      f"{TARGET_FORM})", param, ctx)
        if not 1 <= target.port <= 65535:
            self.fail(f"port {target.port} in {value!r} is not a port (1-65535: {TARGET_FORM})",
                      param, ctx)
        return target


class AddressType(click.ParamType):
    """An IPv4 address, e.g. `--to 10.104.5.205` of conntrack."""

    name = "IP"

    def convert(self, value, param, ctx):
        try:
            return str(ipaddress.IPv4Address(value))
        except ValueError:
            self.fail(f"{value!r} is not an IPv4 address (four numbers 0-255, e.g. 10.104.5.205)",
                      param, ctx)


class CidrType(click.ParamType):
    """`--cluster-cidr`: an IPv4 network written with its prefix length, e.g. 172.17.0.0/16."""

    name = "CIDR"

    def convert(self, value, param, ctx):
        try:
            network = ipaddress.IPv4Network(value, strict=False)
        except ValueError:
            self.fail(f"{value!r} is not an IPv4 network (ADDRESS/PREFIX, e.g. 172.17.0.0/16)",
                      param, ctx)
        if "/" not in value:
            self.fail(f"{value!r} has no prefix length (ADDRESS/PREFIX, e.g. 172.17.0.0/16)",
                      param, ctx)
        return str(network)


TARGET = TargetType()
ADDRESS = AddressType()
CIDR = CidrType()
# kube-proxy's rule formats the renderer writes (one list: the renderer's).
PROFILE = click.Choice(PROFILES)
