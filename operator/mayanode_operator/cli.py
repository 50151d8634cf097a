"""The `mayanode-operator` command line."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from . import __version__
from .config import DEFAULT_WORKLOAD_SELECTOR, ENV_PREFIX, OperatorConfig
from .logs import configure_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mayanode-operator",
                                     description="Runs MAYAChain validator nodes on Kubernetes.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator against the current kubeconfig or in-cluster")
    run.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG, ~/.kube/config)")
    run.add_argument("--context", help="kubeconfig context")
    run.add_argument("-n", "--namespace", action="append", dest="namespaces",
                     help="watch only this namespace (repeatable); default: cluster-wide")
    run.add_argument("--workers", type=int, help="reconciles running at once (default 8)")
    run.add_argument("--workload-selector",
                     help="label selector of the pods and Deployments to watch (default: node-launcher's "
                          f"'{DEFAULT_WORKLOAD_SELECTOR}'; '' = all)")
    run.add_argument("--log-format", choices=["json", "text"])
    run.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument("--peering", help="kopf peering name, for more than one replica")
    run.add_argument("--liveness", dest="liveness_endpoint", help="e.g. http://0.0.0.0:8081/healthz")
    run.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port at /metrics (default 8080; 0 = off)")
    run.set_defaults(handler=cmd_run, flags={action.dest: action.option_strings[-1] for action in run._actions
                                             if action.option_strings and action.dest != "help"})

    demo = commands.add_parser("demo", help="the whole story on an emulated cluster: no cluster needed")
    demo.add_argument("--keep", action="store_true", help="keep the cluster and operator running at the end")
    demo.add_argument("--workdir", default=".demo", help="where the kubeconfig and logs go (default .demo)")
    demo.set_defaults(handler=cmd_demo)

    from .cli_backup import add_backup_commands
    from .cli_inspect import add_inspect_commands

    add_backup_commands(commands)
    add_inspect_commands(commands)
    return parser


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo.run import main as demo_main

    return demo_main(args.workdir, args.keep)


def cmd_run(args: argparse.Namespace) -> int:
    from .operator_loop import run_operator, run_until_done

    try:
        config = OperatorConfig.from_env(
            kubeconfig=args.kubeconfig, context=args.context, namespaces=args.namespaces, workers=args.workers,
            workload_selector=args.workload_selector, log_format=args.log_format, log_level=args.log_level,
            peering=args.peering, liveness_endpoint=args.liveness_endpoint, metrics_port=args.metrics_port,
        )
    except ValidationError as err:
        for line in describe_config_errors(err, args.flags):
            print(f"mayanode-operator: {line}", file=sys.stderr)
        return 2
    configure_logging(config.log_format, config.log_level)
    run_until_done(run_operator(config), config.event_loop)
    return 0


def describe_config_errors(err: ValidationError, flags: dict[str, str]) -> list[str]:
    """One line per invalid setting, naming where it is set (its variable, and its option when `run` has one); the
    value is not echoed (it may be a secret)."""
    lines = []
    for item in err.errors():
        field = ".".join(str(part) for part in item["loc"]) or "configuration"
        where = " or ".join(filter(None, (ENV_PREFIX + field.upper(), flags.get(field))))
        lines.append(f"invalid {field} ({where}): {item['msg'].removeprefix('Value error, ')}")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
