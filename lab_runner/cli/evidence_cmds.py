"""Evidence commands on a running lab: probe, trace, sample, counters, conntrack, rules."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.live import Live
from rich.table import Table

from lab_runner import lab_file
from lab_runner.cli import cli, console
from lab_runner.cli.lifecycle import require_root
from lab_runner.cli.params import ADDRESS, CIDR, PROFILE, TARGET, TARGET_FORM
from lab_runner.errors import LabError
from lab_runner.views import tables

BAR_WIDTH = 30


def _attach(lab: str | None):
    from lab_runner.lab import LiveLab

    require_root()
    return LiveLab.attach(lab)


def _say(text: str) -> None:
    console.print(text, highlight=False, markup=False, soft_wrap=True)


# -- probe ---------------------------------------------------------------------------------------
@cli.command()
@click.argument("lab", required=False)
@click.option("--from", "source", default="client", show_default=True,
              help="the sending host: client, node, or a pod (e.g. dfrdh).")
@click.option("--to", "target", type=TARGET, required=True, help=TARGET_FORM)
@click.option("--http", "http", is_flag=True, help="a full HTTP request (the pod's app answers).")
@click.option("--count", type=click.IntRange(1, 10_000), default=1, show_default=True,
              help="probes to send.")
@click.option("--until-all", is_flag=True,
              help="repeat (at most 200 times) until every endpoint has answered; one line per pod.")
@click.option("--quiet", is_flag=True, help="only the answer line.")
def probe(lab, source, target, http, count, until_all, quiet) -> None:
    """Send a probe and show what the kernel did with it.

    \b
    A crafted SYN (scapy) by default, a real HTTP request with --http, UDP with /udp.
    Shows the answer, what the pod saw (its app's answer, or a capture on the pods' eth0),
    the conntrack entry and every rule whose counter moved.

    \b
    Examples:
      sudo lab-runner probe lab-3 --from client --to 10.104.5.205:8080/tcp --http
      sudo lab-runner probe lab-3 --from dfrdh --to 10.104.5.205:8080/tcp --http --until-all
    """
    from lab_runner.evidence import probing

    live = _attach(lab)
    kind = "udp" if target.proto == "udp" else "http" if http else "syn"
    if until_all or count > 1:
        if kind == "syn":
            kind = "http"  # repeated probes read the pod's view from the app's answer
        _repeated(live, source, target, kind, count, until_all)
        return
    report = probing.probe(live, source, target, kind)
    _print_probe(report, quiet)


def _answer_line(report) -> str:
    answer = report.answer
    what = answer.get("answer", "?")
    if what == "syn-ack":
        text = f"SYN-ACK from {answer['src']}:{answer['sport']}"
    elif what == "reply":
        text = f"reply from {report.target.ip}:{report.target.port}"
    elif what == "rst":
        text = f"RST from {answer.get('src')}:{answer.get('sport')}"
    elif what == "icmp":
        icmp = answer.get("icmp", {})
        text = f"ICMP type {icmp.get('type')} code {icmp.get('code')} from {answer.get('src')}"
    else:
        text = f"no answer ({what})"
    if report.pod:
        text += f": answered by {report.pod}"
    return text


def _print_probe(report, quiet: bool) -> None:
    from lab_runner.evidence.probing import moved_rules

    p = report.answer.get("probe", {})
    if not quiet:
        _say(f"probe      {report.source} {p.get('src', '?')}:{p.get('sport', '?')} -> "
             f"{report.target} ({report.kind})")
    _say(f"answer     {_answer_line(report)}")
    if quiet:
        return
    if report.pod_view:
        _say(f"pod view   pod saw {report.pod_view.src}:{report.pod_view.sport} -> "
             f"{report.pod_view.dst}:{report.pod_view.dport}   ({report.pod_view.pod}, "
             f"from the {report.pod_view.via})")
    else:
        _say("pod view   no pod received it")
    for entry in report.conntrack:
        _say(f"conntrack  {entry.describe()}")
    if report.path is not None:
        _say("rules the packet met (nft monitor trace: kube-proxy's nftables rules carry no "
             "counters), in order:")
        for hop in report.path.hops:
            _say("  " + hop.describe())
        if not report.path.hops:
            _say("  none: the kernel reported no trace events for this probe")
        return
    moved = moved_rules(report)  # in the order the packet met them
    if moved:
        _say("counters that moved (nat table), in the order the packet met them:")
        for packets, chain, number, text in moved:
            rule = text.split(f"-A {chain} ", 1)[-1]
            _say(f"  +{packets:<4} {chain:<28} rule {number:<3} {rule}")
    else:
        _say("counters that moved: none in the nat table (no rule matched)")


def _repeated(live, source, target, kind, count, until_all) -> None:
    from lab_runner.evidence import probing, sampling

    caller_ip = sampling.host_ip(live, source)
    wanted: set[str] = set()
    if until_all:
        expected = _node_expected(live, source, caller_ip, target)
        ips = {k.split(":")[0] for k, p in expected.items() if p and k != sampling.NO_DNAT}
        wanted = {pod.name for pod in live.model.pods if str(pod.ip) in ips}
        count = 200
    seen: dict[str, object] = {}
    sent = 0
    with console.status("probing…"):
        while sent < count and not (until_all and wanted <= set(seen)):
            report = probing.probe(live, source, target, kind, counters=False)
            sent += 1
            if report.pod_view and report.pod not in seen:
                seen[report.pod] = report.pod_view
            if not until_all:
                _say(f"{sent:>3}  {_answer_line(report)}")
    _say(f"{sent} probes from {source} ({caller_ip}) to {target}; what each pod saw:")
    outside = probing.pod_caller_outside(live.model, live.resolve(source)[0], caller_ip)
    notes = {pod: probing.masquerade_note(seen[pod], caller_ip, outside) for pod in seen}
    for pod in sorted(seen):
        view = seen[pod]
        _say(f"  {pod:<28} saw {view.src}:{view.sport} -> {view.dst}:{view.dport}{notes[pod]}")
    if any("cluster CIDR" in note for note in notes.values()):
        _say(probing.pod_caller_reason(live.model, caller_ip, live.run.run_id))
    if until_all and not wanted <= set(seen):
        raise LabError(f"after {sent} probes these endpoints never answered: "
                       f"{', '.join(sorted(wanted - set(seen)))}")


def _node_expected(live, source, caller_ip, target) -> dict:
    """The shares of each destination the node's rules give now, by the mode's own tracer."""
    if live.nftables:
        from lab_runner.evidence import nft_sampling

        return nft_sampling.expected(live, source, target, against="node")[0]
    from lab_runner.evidence import sampling
    from lab_runner.ruleset.counters import Snapshot

    inbound = "eth0" if live.resolve(source)[0] == "client" else live.model.nodes[0].bridge
    return sampling.expected_distribution(Snapshot.parse(live.save()).ruleset, live.model,
                                          caller_ip, target, in_interface=inbound)


# -- trace ---------------------------------------------------------------------------------------
@cli.command()
@click.argument("lab", required=False)
@click.option("--from", "source", default="client", show_default=True)
@click.option("--to", "target", type=TARGET, required=True, help=TARGET_FORM)
@click.option("--on", "node", metavar="NODE",
              help="the node whose rules to trace (default: the node --to addresses, else the "
                   "caller's own: a pod's node, the node a client sends to, the node itself).")
def trace(lab, source, target, node) -> None:
    """Trace one packet through the node's chains with the kernel's own TRACE events.

    Adds a TRACE rule for exactly this probe's 5-tuple, reads `xtables-monitor --trace` in the
    node, removes the rule. Needs the nft variant of iptables. On a lab in nftables mode: a
    `meta nftrace set 1` rule in the kit's own table (kplab-trace, priority -400, deleted
    afterwards) and `nft monitor trace`; kube-proxy's table is not touched.

    \b
    Examples:
      sudo lab-runner trace lab-3 --from client --to 10.104.5.205:8080/tcp
      sudo lab-runner trace lab-5 --from client --to 192.168.49.2:30080/tcp --on node-b
    """
    from lab_runner.evidence import kernel_trace, sampling

    live = _attach(lab)
    src_ip = sampling.host_ip(live, source)
    kind, on = live.resolve(node) if node else ("node", kernel_trace.caller_node(live, source,
                                                                                  target))
    if kind != "node":
        raise click.BadParameter(f"{node!r} is not a node of {live.model.id} (nodes: "
                                 f"{', '.join(n.name for n in live.model.nodes)})", param_hint="--on")
    if live.nftables:
        from lab_runner.evidence import nft_trace

        path, answer, rule = nft_trace.trace_probe(live, source, target, node=on)
        sport = rule.split(f"{target.proto} sport ", 1)[1].split()[0]
    else:
        path, answer, argv = kernel_trace.trace_probe(live, source, target, node=on)
        sport = argv[argv.index("--sport") + 1]
    where = f" on {on}" if len(live.model.nodes) > 1 else ""
    _say(f"trace of the first packet {src_ip}:{sport} -> {target} from {source}{where}")
    if not path.hops:
        seen = (f"answer: {answer.get('answer')}" + (f" from {answer.get('src')}:"
                f"{answer.get('sport')}" if answer.get("src") else ""))
        others = [n.name for n in live.model.nodes if n.name != on]
        hint = (f"; it may have passed another node's rules (--on {' or --on '.join(others)})"
                if others else "")
        raise LabError(f"the kernel reported no trace events for this probe on {on} ({seen}){hint}")
    before = path.before_nat()
    _say(f"before NAT: {before.get('SRC')}:{before.get('SPORT')} -> {before.get('DST')}:"
         f"{before.get('DPORT')}")
    for hop in path.hops:
        _say("  " + hop.describe())
    after = path.after_nat()
    masq = any("masquerade" in h.rule.lower() for h in path.hops)
    _say(f"after NAT:  {after.get('SRC')}:{after.get('SPORT')} -> {after.get('DST')}:"
         f"{after.get('DPORT')}" + ("   (and the source is masqueraded as it leaves)" if masq else ""))
    _say(f"answer: {answer.get('answer')}" + (f" from {answer.get('src')}:{answer.get('sport')}"
                                               if answer.get("src") else ""))


# -- sample --------------------------------------------------------------------------------------
@cli.command()
@click.argument("lab", required=False)
@click.option("--service", "service_port", help="namespace/name:port, e.g. stateful-apps/my-app:http-svc")
@click.option("--to", "target", type=TARGET, help="or the target directly: " + TARGET_FORM)
@click.option("--flows", type=click.IntRange(1, 1_000_000), default=1000, show_default=True,
              help="new connections to send.")
@click.option("--from", "source", default="client", show_default=True)
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=1e-6, show_default=True,
              help="false-failure rate of the test.")
@click.option("--against", type=click.Choice(["kube-proxy", "node"]), default="kube-proxy",
              show_default=True,
              help="expected shares from kube-proxy's chain set for this lab, or from the rules "
                   "the node holds now (after your own changes).")
def sample(lab, service_port, target, flows, source, alpha, against) -> None:
    """Random selection, measured: N new flows, counted per DNAT rule, vs the exact expectation.

    The rule tracer computes the exact expected shares (from kube-proxy's chain set for the lab,
    or with --against node from the rules in the node); the test is a chi-square goodness of
    fit whose false-failure rate is --alpha. In nftables mode (no counters) each connection is
    counted by the pod that answered, and nft_tracer gives the shares.

    \b
    Examples:
      sudo lab-runner sample lab-3 --service stateful-apps/my-app:http-svc --flows 1000
      sudo lab-runner sample lab-3 --to 10.104.5.205:8080 --against node
    """
    from lab_runner.evidence import sampling

    if bool(service_port) == bool(target):
        raise click.UsageError("give either --service NAMESPACE/NAME:PORT or --to " + TARGET_FORM)
    live = _attach(lab)
    target = sampling.service_target(live.model, service_port) if service_port else target
    if live.nftables:
        from lab_runner.evidence import nft_sampling

        report = nft_sampling.sample(live, target, flows, source=source, alpha=alpha,
                                     against=against)
        _print_sample(report, service_port)
        if not report.passed:
            raise LabError("the spread does not fit the rules' probabilities")
        return
    expected = sampling.reference_expected(live, source, target) if against == "kube-proxy" else None
    report = sampling.sample(live, target, flows, source=source, alpha=alpha, expected=expected)
    _print_sample(report, service_port)
    if not report.passed:
        raise LabError("the spread does not fit the rules' probabilities")


def _print_sample(report, service_port: str | None) -> None:
    what = f" ({service_port})" if service_port else ""
    _say(f"sample     {report.flows} new flows from {report.source} to {report.target}{what} "
         f"sent in {report.seconds:.3f} s")
    keys = sorted(set(report.observed) | set(report.expected))
    for key in keys:
        got = report.observed.get(key, 0)
        share = got / report.flows if report.flows else 0.0
        want = float(report.expected.get(key, 0))
        bar = "█" * round(share * BAR_WIDTH * 2)
        chain = report.chains.get(key, "")
        _say(f"  {chain:<26} {key:<18} {got:>6}  {share * 100:5.1f} %   expected "
             f"{want * 100:4.1f} %  {bar}")
    r = report.result
    verdict = "consistent with the rules" if r.passed else "NOT consistent with the rules"
    _say(f"chi-square {r.statistic:.2f} with {r.dof} degrees of freedom, p = {r.p_value:.3g} "
         f"(alpha = {r.alpha:g}): {verdict}")


# -- counters / conntrack ------------------------------------------------------------------------
@cli.command()
@click.argument("lab", required=False)
@click.option("--chain", help="only this chain (e.g. KUBE-SVC-Q7IJ732UBZY4AJKA)")
@click.option("--table", default="nat", show_default=True)
@click.option("--watch", is_flag=True, help="refresh every second, showing growth since start.")
def counters(lab, chain, table, watch) -> None:
    """The node's rule counters (packets, bytes) for the KUBE- chains or one chain; +pkts is
    what a rule's packet counter grew since the command started (see --watch).

    \b
    Examples:
      sudo lab-runner counters lab-3 --watch
      sudo lab-runner counters lab-3 --chain KUBE-SVC-Q7IJ732UBZY4AJKA
    """
    from lab_runner.ruleset.counters import Snapshot, delta

    live = _attach(lab)
    if live.nftables:
        raise LabError(f"run {live.run.run_id} runs kube-proxy in nftables mode, whose rules "
                       "carry no counters: `lab-runner trace` lists the rules a packet meets, "
                       "and `lab-runner probe` shows them for each probe")
    start = Snapshot.parse(live.save())

    def table_now() -> Table:
        now = Snapshot.parse(live.save())
        change = delta(start, now)
        grid = tables.table("chain", "#", "pkts", "bytes", "+pkts", "rule")  # +: since start
        for rule in now.ruleset.rules(table):
            if (chain and rule.chain != chain) or (not chain and not rule.chain.startswith("KUBE-")):
                continue
            number = now.ruleset.chain(table, rule.chain).rules.index(rule) + 1
            grown = change.rule(table, rule.chain, number).packets
            grid.add_row(rule.chain, str(number), str(rule.counters.packets),
                         str(rule.counters.bytes), f"+{grown}" if grown else "",
                         rule.text.split(f"-A {rule.chain} ", 1)[-1])
        return tables.keep_whole(grid, 0)  # chain names whole: the rule text wraps instead

    if not watch:
        console.print(table_now())
        return
    with Live(table_now(), console=console, refresh_per_second=2) as view:
        try:
            while True:
                time.sleep(1)
                view.update(table_now())
        except KeyboardInterrupt:
            pass


@cli.command()
@click.argument("lab", required=False)
@click.option("--to", "to_ip", type=ADDRESS,
              help="only connections to this address (e.g. the ClusterIP)")
@click.option("--proto", type=click.Choice(["tcp", "udp"]))
def conntrack(lab, to_ip, proto) -> None:
    """The node's conntrack entries: what each caller sent, and where it really went.

    \b
    Example:
      sudo lab-runner conntrack lab-3 --to 10.104.5.205
    """
    from lab_runner.evidence import conntrack as ct

    live = _attach(lab)
    result = live.exec("node", ct.list_command(proto, to_ip))
    entries = ct.from_result(result)
    if not entries:
        _say("no conntrack entries" + (f" to {to_ip}" if to_ip else ""))
        return
    for entry in entries:
        _say(entry.line)
        _say(f"   = {entry.describe()}")


# -- rules ---------------------------------------------------------------------------------------
NODE = "@node"  # `--diff` with no file: the running node's own rules


class DiffSource(click.Path):
    """`--diff FILE`, or `--diff` alone: the rules the running lab's node holds."""

    def convert(self, value, param, ctx):
        return NODE if value == NODE else super().convert(value, param, ctx)


@cli.command()
@click.argument("lab")
@click.option("--profile", type=PROFILE, help="kube-proxy rule format.")
@click.option("--cluster-cidr", type=CIDR, help="render with another cluster CIDR.")
@click.option("--diff", "diff_file", type=DiffSource(exists=True, dir_okay=False),
              is_flag=False, flag_value=NODE,
              help="compare the rendered rules with this iptables-save/restore file (nft file "
                   "for a lab in nftables mode), or, given alone, with the running node's rules.")
@click.option("--apply", "apply_", is_flag=True,
              help="apply the re-rendered chains to the running lab, atomically.")
def rules(lab, profile, cluster_cidr, diff_file, apply_) -> None:
    """kube-proxy's chain set for LAB, as one iptables-restore document (in nftables mode: the
    `nft -f` document of table ip kube-proxy).

    LAB is a lab id or file, or a run id (that run's lab as it is now). --apply and --diff
    without a file act on a running lab: LAB is then its run id, or its lab id where only one
    run of that lab is up.

    \b
    Examples:
      lab-runner rules lab-3                               print it
      lab-runner rules lab-3 --diff my.rules               compare semantically (exit 1 if not equal)
      sudo lab-runner rules lab-3 --diff                   compare with the running node's rules
      sudo lab-runner rules 3fa2c1 --cluster-cidr 172.17.0.0/16 --apply   re-render run 3fa2c1
    """
    from lab_runner.lab import _with_overrides, check_proxy_mode

    if apply_:
        if diff_file:
            raise click.UsageError("--apply and --diff do not go together: apply, then compare "
                                   "with `lab-runner rules RUN_ID --diff`")
        # The run first: LAB may be a run id, and the run knows its own lab file.
        live = _attach(lab)
        live.model = _with_overrides(live.model, profile, cluster_cidr)
        check_proxy_mode(live.model)
        if live.nftables:
            live.restore(live.rendered_rules(replace=True))
        else:
            live.restore(live.rendered_rules(base_jumps=False))
        live.run.cluster_cidr = str(live.model.cluster_cidr)
        live.run.profile = live.model.profile
        live.run.save()
        _say(f"applied: {live.model.id} (run {live.run.run_id}) now renders with cluster CIDR "
             f"{live.model.cluster_cidr}, profile {live.model.profile}")
        return
    if diff_file == NODE:
        live = _attach(lab)
        live.model = _with_overrides(live.model, profile, cluster_cidr)
        check_proxy_mode(live.model)
        _diff_with_node(live)
        return
    model = _with_overrides(_model_of(lab), profile, cluster_cidr)
    document = _render(model)
    if diff_file:
        text = Path(diff_file).read_text(errors="replace")
        found = _differences(model, document, text, diff_file)
        if found:
            raise LabError(f"{diff_file} differs from the rendered chain set "
                           f"({found} difference(s))")
        return
    _say(document.rstrip("\n"))


def _render(model) -> str:
    from lab_runner.lab import check_proxy_mode

    check_proxy_mode(model)  # --profile v1.23 on an nftables lab: said, not a traceback
    if model.proxy_mode == "nftables":
        from lab_runner.ruleset.nft_render import render as nft_render

        return nft_render(model, model.profile)
    from lab_runner.ruleset.render import render

    return render(model, model.profile)


def _differences(model, document: str, other: str, other_name: str) -> int:
    """Print how `other` differs from the render (semantically); the number of differences."""
    if model.proxy_mode == "nftables":
        from lab_runner.ruleset.nft_compare import differences
        from lab_runner.ruleset.nft_parse import parse_nft
        from lab_runner.ruleset.nft_names import TABLE

        key = ("ip", TABLE)
        found = differences(parse_nft(document).tables.get(key),
                            parse_nft(other).tables.get(key), actual_name=other_name)
        _say("\n".join(found) if found else f"no differences: {other_name} holds kube-proxy's "
                                             "table as rendered")
        return len(found)
    from lab_runner.ruleset.compare import compare

    result = compare(document, other)
    _say(result.text)
    return 0 if result.equal else len(result.differences)


def _diff_with_node(live) -> None:
    """The render against what each node holds now (exit 1 when they differ)."""
    from lab_runner.ruleset import nft_apply

    total = 0
    for node in live.model.nodes:
        where = f"node {node.name}"
        if live.nftables and not nft_apply.has_table(live.runner, live.place(node.name)):
            held = ""  # no table at all: every object is a difference
        else:
            held = live.save(node.name)
        total += _differences(live.model, live.rendered_rules(node=node.name), held, where)
    if total:
        raise LabError(f"the running lab's rules differ from kube-proxy's ({total} "
                       f"difference(s)); `lab-runner rules {live.run.run_id} --apply` restores "
                       "them")


def _model_of(lab: str):
    """The model LAB names: a run's as it is now (scaled, re-rendered), or a lab file's."""
    from lab_runner.runs import valid_run_id

    if valid_run_id(lab):
        from lab_runner.lab import LiveLab

        return LiveLab.attach(lab).model
    return lab_file.load(lab)
