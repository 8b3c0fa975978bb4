"""The command line: ``python -m aionetstack`` / ``aionetstack`` with ``serve``, ``nc``, ``ping``,
``demo``, ``ss`` and ``plot`` (arguments in :mod:`.arguments`, the commands in :mod:`.commands`).

Mistakes in the arguments are argparse errors (usage and one line, exit 2). Failures at run time
that a user can fix — no permission for the TAP device, a device or file that is missing, a
refused connection — are one line on stderr and exit 1, never a traceback. Internal errors still
show their traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from aionetstack import __version__ as __version__
from aionetstack.cli.arguments import _check_link, _check_nc, _check_ping, _check_serve_ports, build_parser
from aionetstack.cli.common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, IPV6_MIN_MTU, PROG, CliError

__all__ = ["build_parser", "main"]


# ---------------------------------------------------------------------------------------------
# running


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if choice == "asyncio":
        return asyncio.SelectorEventLoop
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise CliError(
                "--loop uvloop: uvloop is not installed (pip install uvloop)", EXIT_USAGE
            ) from None
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def _describe_os_error(exc: OSError) -> str:
    # OSError(errno, text) from our links already says what and why; a bare one gets its filename.
    if exc.filename is not None and exc.strerror:
        return f"{exc.strerror}: {exc.filename}"
    if exc.strerror:
        return exc.strerror
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script passes it to ``sys.exit``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        _check_serve_ports(parser, args)
        _check_link(parser, args)
    elif args.command == "nc":
        _check_link(parser, args)
        _check_nc(parser, args)
    elif args.command == "ping":
        _check_link(parser, args)
        _check_ping(parser, args)
    elif args.command == "demo" and args.ipv6 and args.mtu < IPV6_MIN_MTU:
        parser.error(f"--mtu {args.mtu} cannot carry IPv6 (RFC 8200 §5: at least {IPV6_MIN_MTU})")
    command: Callable[[argparse.Namespace], Coroutine[Any, Any, int]] = args.run
    try:
        with asyncio.Runner(loop_factory=_loop_factory(args.loop)) as runner:
            return runner.run(command(args))
    except CliError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except (PermissionError, FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        print(f"{PROG}: {_describe_os_error(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:
        # stdout's reader went away (`aionetstack nc ... | head`): nothing more to say to anyone.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except OSError as exc:
        # Run-time failures a user can act on: device busy, address in use, no route...
        print(f"{PROG}: {_describe_os_error(exc)}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
