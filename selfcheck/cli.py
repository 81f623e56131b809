"""The ``selfcheck`` command: ``check``, ``serve``, ``probe``, ``explain``, ``list``, ``lint``.

Exit codes follow the monitoring-plugin convention on-call people already know:
0 every check ok, 1 only degraded or optional failures, 2 a required check failed,
3 unknown (bad usage, bad configuration, internal error). Heavy imports (the metrics
library, the HTTP server) happen only in the commands that need them, so ``probe``
answers well within the kubelet's one-second budget.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from selfcheck import __version__
from selfcheck.config import Config, ConfigError, load, parse_ids, with_agent_settings
from selfcheck.exitcodes import (
    EXIT_BROKEN_PIPE,
    EXIT_CRITICAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNKNOWN,
    EXIT_WARNING,
)
from selfcheck.model import Snapshot, Status
from selfcheck.registry import CheckSpec, all_checks, required_ids, why_required


def unknown(message: str) -> int:
    """One line on stderr and the convention's "unknown" (3): never a traceback."""
    print(message, file=sys.stderr)
    return EXIT_UNKNOWN


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage; 2 means 'a required check failed' here, so use 3.

    ``commands`` holds the subcommands' parsers, so an unknown flag after ``check`` is
    reported with ``check``'s usage, not the top-level one.
    """

    commands: dict[str, _Parser]

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_UNKNOWN)

    def parse_command(self, argv: Sequence[str] | None) -> argparse.Namespace:
        args, extra = self.parse_known_args(argv)
        if extra:
            command = self.commands.get(getattr(args, "command", ""), self)
            command.error(f"unrecognized arguments: {' '.join(extra)}")
        return args


FLAG_SOURCES = {
    "host_proc": ("--host-proc", "HOST_PROC"),
    "cgroup_root": ("--cgroup-root", "DD_CONTAINER_CGROUP_ROOT"),
    "require": ("--require", "SELFCHECK_REQUIRE"),
    "skip": ("--skip", "SELFCHECK_SKIP"),
    "timeout": ("--timeout", "SELFCHECK_CHECK_TIMEOUT"),
    "interval": ("--interval", "SELFCHECK_INTERVAL"),
    "listen": ("--listen", "SELFCHECK_LISTEN"),
}
"""Each flag and the variable it overrides: one parser reads both, the error names the one
the user typed."""


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration (flags override the environment)")
    group.add_argument("--host-proc", metavar="DIR", help="host procfs (HOST_PROC)")
    group.add_argument(
        "--cgroup-root", metavar="DIR", help="host cgroupfs (DD_CONTAINER_CGROUP_ROOT)"
    )
    group.add_argument("--require", metavar="IDS", help="extra required checks (SELFCHECK_REQUIRE)")
    group.add_argument("--skip", metavar="IDS", help="checks to skip (SELFCHECK_SKIP)")
    group.add_argument(
        "--timeout", metavar="SECONDS", help="per-check deadline (SELFCHECK_CHECK_TIMEOUT)"
    )
    group.add_argument("--interval", metavar="SECONDS", help="cycle interval (SELFCHECK_INTERVAL)")
    group.add_argument("--listen", metavar="HOST:PORT", help="HTTP address (SELFCHECK_LISTEN)")


def _add_web_config_flag(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--web.config.file``: the file ``serve`` serves by, and the one ``probe`` reads to reach
    that server the same way."""
    parser.add_argument("--web.config.file", dest="web_config_file", metavar="FILE", help=help_text)


def _add_client_tls_flags(parser: argparse.ArgumentParser, ca_help: str) -> None:
    """The client side of TLS, the same for ``probe`` and ``fleet``; only what the CA verifies
    differs."""
    parser.add_argument("--ca-file", metavar="FILE", help=ca_help)
    parser.add_argument("--cert-file", metavar="FILE", help="client certificate, for mutual TLS")
    parser.add_argument("--key-file", metavar="FILE", help="the client certificate's key")


def _add_fleet_parser(sub: Any) -> None:
    """``fleet`` flags here, so that parsing never imports ``requests`` (selfcheck/fleet/)."""
    fleet = sub.add_parser("fleet", help="the fleet's verdicts, from Prometheus")
    fleet.add_argument(
        "--prometheus",
        metavar="URL",
        help="Prometheus base URL, basic auth as user:pass@ (SELFCHECK_PROMETHEUS_URL;"
        " default http://127.0.0.1:9090)",
    )
    fleet.add_argument("--check", metavar="ID", help="only this check")
    fleet.add_argument("--json", action="store_true", help="print the view as JSON")
    fleet.add_argument(
        "--selector",
        metavar="MATCHERS",
        default="",
        help='extra label matchers for every series, e.g. cluster="prod",nodepool="gpu"',
    )
    fleet.add_argument("--node-label", default="node", help="the label naming the node (node)")
    fleet.add_argument("--bearer-token-file", metavar="FILE", help="send the token in it")
    _add_client_tls_flags(fleet, "CA bundle for an https URL")
    fleet.add_argument("--timeout", type=float, default=10.0, help="seconds per query (10)")
    fleet.add_argument("--limit", type=int, default=100, help="failing rows shown; 0: all")
    fleet.add_argument(
        "--scrape-interval",
        default="30s",
        metavar="DURATION",
        help="selfcheck's scrape interval, for 'since' (30s, the PodMonitor's)",
    )


def _probe_seconds(raw: str) -> float:
    """A probe deadline: more than 0 and at most a minute (the kubelet's own bound is the
    probe's timeoutSeconds)."""
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds") from None
    if not 0 < value <= 60:
        raise argparse.ArgumentTypeError(f"{raw!r} is out of range (more than 0, at most 60)")
    return value


def build_parser() -> _Parser:
    parser = _Parser(
        prog="selfcheck",
        description="Prove that the Datadog Agent's host access works on this node.",
    )
    parser.add_argument("--version", action="version", version=f"selfcheck {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    parser.commands = sub.choices

    check = sub.add_parser("check", help="run every check once and print a report")
    check.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    check.add_argument("--only", metavar="IDS", help="comma list of check ids to run")
    check.add_argument("--verbose", "-v", action="store_true", help="show details of every check")
    _add_config_flags(check)

    serve = sub.add_parser("serve", help="run the sidecar: background checks and HTTP endpoints")
    _add_config_flags(serve)
    _add_web_config_flag(
        serve,
        "exporter-toolkit web configuration: TLS, basic auth, headers "
        "(SELFCHECK_WEB_CONFIG; docs/web-config.md)",
    )

    probe = sub.add_parser("probe", help="ask the local server (exec probe, HEALTHCHECK)")
    probe.add_argument("kind", choices=("live", "ready", "startup"))
    probe.add_argument("--listen", metavar="HOST:PORT", help="server address (SELFCHECK_LISTEN)")
    probe.add_argument("--timeout", type=_probe_seconds, default=1.0, help="seconds (default 1)")
    _add_web_config_flag(
        probe, "the server's web configuration (SELFCHECK_WEB_CONFIG): HTTPS when it enables TLS"
    )
    _add_client_tls_flags(
        probe,
        "verify the server's certificate with this CA (default: no verification, as "
        "the kubelet's HTTPS probes)",
    )
    _add_fleet_parser(sub)

    explain = sub.add_parser("explain", help="what a check proves and how to fix each reason")
    explain.add_argument("id")

    sub.add_parser("list", help="the checks and whether each is required here")

    lint = sub.add_parser("lint", help="predict the checks' verdicts from a rendered manifest")
    lint.add_argument(
        "-f", "--filename", required=True, metavar="FILE",
        help="helm template / kubectl kustomize / kubectl get -o yaml|json output; - for stdin",
    )  # fmt: skip
    lint.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    lint.add_argument(
        "--operator-version", default="", metavar="X.Y",
        help="the Datadog Operator whose rules build a DatadogAgent's pod (default: the newest "
        "encoded)",
    )  # fmt: skip
    return parser


class FlagError(ConfigError):
    """A bad value given as a flag: the message names the flag, not its variable."""


def _config_from(args: argparse.Namespace, checks: dict[str, CheckSpec]) -> Config:
    """Environment first, then flags, through the same parsers; an error names its source."""
    env = dict(os.environ)
    sources: dict[str, str] = {}
    for attr, (flag, name) in FLAG_SOURCES.items():
        value = getattr(args, attr, None)
        if value is not None:
            env[name] = str(value)
            sources[name] = flag
    try:
        for name in ("SELFCHECK_REQUIRE", "SELFCHECK_SKIP"):
            _check_ids(sources.get(name, name), env.get(name), checks)
        config = load(frozenset(checks), env)
    except ConfigError as exc:
        raise _from_flag(exc, sources) from None
    from selfcheck.host.agent import agent_config
    from selfcheck.host.nodeagent import picker

    theirs = agent_config(config.host_proc, config.mode, pick=picker(config.mode))
    return with_agent_settings(config, frozenset(checks), env, theirs)


def _from_flag(error: ConfigError, sources: Mapping[str, str]) -> ConfigError:
    """``SELFCHECK_CHECK_TIMEOUT='0' is ...`` becomes ``--timeout: '0' is ...`` when the value
    came from ``--timeout``; the parsers name what they read, and they read the variable."""
    message = str(error)
    for name, flag in sources.items():
        if message.startswith(f"{name}="):
            return FlagError(f"{flag}: {message.removeprefix(f'{name}=')}")
        if message.startswith(f"{name}:") or message.startswith(f"{name} "):
            return FlagError(flag + message.removeprefix(name))
    return error


def _check_ids(source: str, raw: str | None, checks: Mapping[str, CheckSpec]) -> None:
    """Unknown ids named with the known ones in the registry's order, as ``explain`` does."""
    given = (part.strip() for part in (raw or "").split(","))
    unknown = [cid for cid in dict.fromkeys(given) if cid and cid not in checks]
    if unknown:
        error = FlagError if source.startswith("--") else ConfigError
        raise error(f"{source}: unknown check id {', '.join(unknown)} (known: {', '.join(checks)})")


def _only(raw: str | None, checks: dict[str, CheckSpec]) -> frozenset[str] | None:
    if not raw:
        return None
    _check_ids("--only", raw, checks)
    return parse_ids("--only", raw, frozenset(checks))


def exit_code(snapshot: Snapshot) -> int:
    if not snapshot.ready:
        return EXIT_CRITICAL
    bad = (Status.FAILED, Status.ERROR, Status.DEGRADED)
    if any(r.status in bad for r in snapshot.results.values()):
        return EXIT_WARNING
    return EXIT_OK


def _quiet_logs(verbose: bool) -> None:
    """The report is the output of ``check``; JSON logs only with --verbose (for tracebacks)."""
    import logging

    from selfcheck.logs import get_logger, setup

    if verbose:
        setup(logging.ERROR)
    else:
        logger = get_logger()
        logger.addHandler(logging.NullHandler())
        logger.propagate = False


def cmd_check(args: argparse.Namespace, checks: dict[str, CheckSpec]) -> int:
    from selfcheck.report import output_width, render_table
    from selfcheck.runner import Runner

    _quiet_logs(args.verbose)
    config = _config_from(args, checks)
    only = _only(args.only, checks)
    runner = Runner(config, checks)
    snapshot = runner.run_cycle(only)
    if args.json:
        body = snapshot.to_json(snapshot.completed_at or 0.0, config.stale_after)
        print(json.dumps(body, indent=2))
    else:
        print(render_table(snapshot, checks, args.verbose, output_width()))
    return exit_code(snapshot)


def cmd_serve(args: argparse.Namespace, checks: dict[str, CheckSpec]) -> int:
    from selfcheck.service import serve

    web_config = args.web_config_file or os.environ.get("SELFCHECK_WEB_CONFIG")
    return serve(_config_from(args, checks), checks, web_config)


def cmd_probe(args: argparse.Namespace) -> int:
    from selfcheck.probe import TlsOptions, probe

    tls = TlsOptions(args.web_config_file, args.ca_file, args.cert_file, args.key_file)
    return probe(args.kind, args.listen, args.timeout, tls)


def cmd_fleet(args: argparse.Namespace, checks: dict[str, CheckSpec]) -> int:
    from selfcheck.fleet import FleetError, run

    try:
        return run(args, list(checks))
    except FleetError as exc:
        return unknown(f"selfcheck fleet: {exc}")


def cmd_explain(args: argparse.Namespace, checks: dict[str, CheckSpec]) -> int:
    from selfcheck.report import output_width, render_explain

    spec = checks.get(args.id)
    if spec is None:
        return unknown(f"selfcheck: unknown check {args.id!r} (known: {', '.join(checks)})")
    print(render_explain(spec, output_width()))
    return EXIT_OK


def cmd_list(args: argparse.Namespace, checks: dict[str, CheckSpec]) -> int:
    from selfcheck.report import output_width, render_list

    config = _config_from(args, checks)
    required = required_ids(config, checks)
    needs = {}
    for cid, spec in checks.items():
        word = "skipped" if cid in config.skip else "required" if cid in required else "optional"
        why = why_required(config, spec)
        needs[cid] = (word, "" if why == "optional" else why)
    print(render_list(checks, needs, output_width()))
    return EXIT_OK


def cmd_lint(args: argparse.Namespace) -> int:
    """Reads only the file it is given: nothing is fetched from a cluster."""
    from selfcheck.lint import InputError, lint_text
    from selfcheck.lint.loader import read_capped
    from selfcheck.lint.report import exit_code, render_json, render_table

    try:
        if args.filename == "-":
            text = read_capped(sys.stdin.buffer, "standard input")
        else:
            with open(args.filename, "rb") as stream:  # noqa: PTH123 - a stream, capped
                text = read_capped(stream, args.filename)
        reports = lint_text(text, args.operator_version)
    except InputError as exc:
        return unknown(f"selfcheck: lint: {exc}")
    except OSError as exc:
        return unknown(f"selfcheck: lint: cannot read {args.filename}: {exc.strerror}")
    print(render_json(reports) if args.json else render_table(reports))
    return exit_code(reports)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _dispatch(argv)
        finally:  # a reader gone (``| head``) shows here, not in the interpreter's last flush
            sys.stdout.flush()
    except KeyboardInterrupt:  # Ctrl-C: no traceback, the shell's code for SIGINT
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _reader_gone()


def _reader_gone() -> int:
    """The output's reader went away: exit quietly with the status coreutils show then.

    Python's advice (the ``signal`` module's note on SIGPIPE): catch ``BrokenPipeError``
    rather than restore SIGPIPE's default action, which would also kill ``serve`` whenever a
    client closes its socket mid-answer; and point the standard streams at ``/dev/null``, so
    the interpreter's final flush of what is still buffered does not fail a second time.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        os.dup2(devnull, stream.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def _dispatch(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_command(argv)  # the parser is not kept for a server's life
    try:
        if args.command == "probe":
            return cmd_probe(args)
        if args.command == "lint":
            return cmd_lint(args)
        checks = all_checks()
        handlers = {
            "check": cmd_check,
            "serve": cmd_serve,
            "explain": cmd_explain,
            "list": cmd_list,
            "fleet": cmd_fleet,
        }
        return handlers[args.command](args, checks)
    except FlagError as exc:
        return unknown(f"selfcheck: {exc}")
    except ConfigError as exc:
        return unknown(f"selfcheck: configuration error: {exc}")
    except BrokenPipeError:  # the output's reader went away: not an internal error
        raise
    except Exception as exc:  # the convention's "unknown": never a bare traceback
        if _raised_by_ctrl_c(exc):
            raise KeyboardInterrupt from exc
        return unknown(f"selfcheck: internal error: {type(exc).__name__}: {exc}")


def _raised_by_ctrl_c(exc: BaseException) -> bool:
    """An error raised while a Ctrl-C was being unwound is the Ctrl-C, not a bug of ours.

    Python raises ``KeyboardInterrupt`` between any two bytecodes; one that lands inside
    ``threading.Condition.wait`` after it released its lock and before its ``try`` makes the
    enclosing ``with`` release it again: ``RuntimeError: release unlocked lock``, with the
    interrupt as its context (seen when ``selfcheck check`` is interrupted while a check waits).
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False
