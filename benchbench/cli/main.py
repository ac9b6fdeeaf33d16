"""The commands. Thin: parse arguments, call the library, print. User mistakes end
here as one line per problem on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import argparse

import benchbench
from benchbench.cli import data as cli_data
from benchbench.cli import history as cli_history
from benchbench.cli import info as cli_info
from benchbench.cli import profile as cli_profile
from benchbench.cli import report as cli_report
from benchbench.cli import run as cli_run
from benchbench.cli.common import err as _err
from benchbench.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR, UserError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchbench", description=benchbench.__doc__)
    p.add_argument("--version", action="version", version=f"benchbench {benchbench.__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cli_run.add_parser(sub)  # run SUITE
    cli_info.add_parsers(sub)  # validate, list, schema, devices
    cli_report.add_parser(sub)  # report RUN_DIR...
    cli_history.add_parsers(sub)  # store import, compare, history, check
    cli_profile.add_parser(sub)  # profile SUITE --case ID
    cli_data.add_parser(sub)  # data generate DIR
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {
            "run": cli_run.cmd_run,
            "validate": cli_info.cmd_validate,
            "list": cli_info.cmd_list,
            "schema": cli_info.cmd_schema,
            "devices": cli_info.cmd_devices,
            "report": cli_report.cmd_report,
            "profile": cli_profile.cmd_profile,
            **cli_history.COMMANDS,
            **cli_data.COMMANDS,
        }[args.command](args)
    except UserError as e:
        for line in e.problems:
            _err(line)
        if str(e) not in e.problems:
            _err(f"error: {e}")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except OSError as e:  # a file the user named that cannot be read or written: say which and why
        if e.filename is None:
            raise
        _err(f"error: {e.filename}: {e.strerror or type(e).__name__}")
        return EXIT_USER_ERROR
