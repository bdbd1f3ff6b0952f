"""``issuer drill``: runs the rotation drill (the ``drill`` package) and prints its report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from issuer.cli.common import (
    print_json,
)
from serving.cli import CLIError


def cmd_drill(args: argparse.Namespace) -> None:
    from drill.config import DrillError, config_from_args
    from drill.report import format_report
    from drill.runner import run_drill

    try:
        config = config_from_args(args, stdin=sys.stdin)
        report = run_drill(config, progress=None if args.quiet else sys.stderr)
    except DrillError as exc:
        raise CLIError(str(exc)) from None
    text = format_report(report)
    if args.json == "-":
        sys.stderr.write(text)
        print_json(report)
    else:
        sys.stdout.write(text)
        if args.json:
            try:
                Path(args.json).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
            except OSError as exc:
                raise CLIError(f"cannot write {args.json}: {exc.strerror}") from None
    if not report["ok"]:
        raise SystemExit(1)
