"""Run a library's own test suite with every event loop on an aionetstack Stack (the pytest
plugin), or on a plain loop to compare, and count what passes.

    # aiohttp: its sdist ships its tests; pip fetches it (the registry is all this needs)
    python tests/thirdparty/suites.py aiohttp                  # the files of issue 11, over the stack
    python tests/thirdparty/suites.py aiohttp --plain          # the same on a plain loop
    python tests/thirdparty/suites.py aiohttp --uvloop         # over the stack, uvloop as the base loop
    python tests/thirdparty/suites.py aiohttp --bounded        # what CI runs (tests/thirdparty)

    # websockets: its sdist has no tests; give a checkout of its repository at tag 17.0.1
    git clone --branch 17.0.1 --depth 1 https://github.com/python-websockets/websockets /tmp/ws
    python tests/thirdparty/suites.py websockets /tmp/ws [--plain] [--uvloop]

Needs the ``thirdparty`` extra (``pip install -e '.[thirdparty]'``, part of ``test``): the
pinned aiohttp and websockets and the suites' own test dependencies. Prints the counts and every
test that failed, one line each with its first error line.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET

import attrs

AIOHTTP_VERSION = "3.14.5"
WEBSOCKETS_VERSION = "17.0.1"

#: The files issue 11 measured aiohttp on.
AIOHTTP_FILES = [
    "test_client_functional.py",
    "test_web_functional.py",
    "test_web_websocket_functional.py",
    "test_client_ws_functional.py",
    "test_connector.py",
    "test_run_app.py",
    "test_web_server.py",
    "test_proxy_functional.py",
    "test_web_sendfile_functional.py",
    "test_test_utils.py",
]
#: What CI runs: the functional client/server/websocket files (~700 tests, the bulk of the
#: loopback traffic) within a few minutes on two cores.
AIOHTTP_BOUNDED = [
    "test_client_functional.py",
    "test_web_functional.py",
    "test_web_websocket_functional.py",
    "test_client_ws_functional.py",
    "test_web_server.py",
    "test_test_utils.py",
]
WEBSOCKETS_PATHS = ["tests/asyncio", "tests/legacy"]

# Plugins of this project's environment that are not the suites' own (looptime patches loops,
# pytest-asyncio is not in aiohttp's or websockets' environment).
FOREIGN_PLUGINS = ["looptime_plugin", "looptime_chronometers", "looptime_timeproxies", "asyncio"]


@attrs.define
class SuiteResult:
    passed: set[str]
    failed: dict[str, str]  # test id -> first line of its error
    skipped: int
    returncode: int

    @property
    def summary(self) -> str:
        return f"{len(self.passed)} passed, {len(self.failed)} failed, {self.skipped} skipped"


def fetch_aiohttp_tests(into: pathlib.Path) -> pathlib.Path:
    """Download aiohttp's sdist with pip and unpack it; the tree whose ``tests/`` we run.

    The sdist's own ``aiohttp/`` package is removed, so the installed (pinned) one is tested.
    """
    installed = importlib.metadata.version("aiohttp")
    if installed != AIOHTTP_VERSION:
        raise RuntimeError(f"aiohttp {installed} is installed; the suite is pinned to {AIOHTTP_VERSION}")
    tree = into / f"aiohttp-{AIOHTTP_VERSION}"
    if (tree / "tests").is_dir():
        return tree
    spec = f"aiohttp=={AIOHTTP_VERSION}"
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps"]
    subprocess.run([*command, spec, "-d", str(into)], check=True, capture_output=True, timeout=600)
    with tarfile.open(into / f"aiohttp-{AIOHTTP_VERSION}.tar.gz") as archive:
        archive.extractall(into, filter="data")
    shutil.rmtree(tree / "aiohttp")
    return tree


def run_suite(
    root: pathlib.Path,
    paths: list[str],
    *,
    stack: bool = True,
    uvloop: bool = False,
    extra: list[str] | None = None,
    timeout: float = 3600,
) -> SuiteResult:
    """``pytest`` on ``paths`` under ``root`` (the suite's own conftest and ini apply, its
    ``addopts`` do not: no xdist, no coverage), over a stack unless ``stack`` is False."""
    handle, junit = tempfile.mkstemp(suffix=".xml")
    os.close(handle)
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts="]
    for name in FOREIGN_PLUGINS:
        args += ["-p", f"no:{name}"]
    args += ["--timeout", "60", f"--junitxml={junit}"]
    # The plain run goes through the same policy hook with no stack (--aionetstack-kernel), so
    # both runs make their loops the same way and differ only in the network.
    args += ["-p", "aionetstack.pytest_plugin", "--aionetstack"]
    if not stack:
        args.append("--aionetstack-kernel")
    if uvloop:
        args.append("--aionetstack-uvloop")
    args += extra or []
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_ADDOPTS", None)
    try:
        done = subprocess.run(
            [*args, *paths], cwd=root, env=env, capture_output=True, text=True, timeout=timeout
        )
        if not os.path.getsize(junit):
            raise RuntimeError(f"pytest wrote no report (exit {done.returncode}): {done.stdout[-2000:]}")
        return _read_junit(junit, done.returncode)
    finally:
        os.unlink(junit)


def _read_junit(path: str, returncode: int) -> SuiteResult:
    passed: set[str] = set()
    failed: dict[str, str] = {}
    skipped = 0
    for case in ET.parse(path).getroot().iter("testcase"):
        # uvloop runs of aiohttp name their loop in the id; the same test is the same test.
        name = f"{case.get('classname')}::{case.get('name')}".replace("[uvloop", "[pyloop")
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = child.tag
                failed.setdefault(name, (child.get("message") or child.tag).splitlines()[0][:200])
                break
            if child.tag == "skipped":
                outcome = "skipped"
        if outcome == "passed" and name not in failed:
            passed.add(name)
        elif outcome == "skipped":
            skipped += 1
    passed -= failed.keys()  # a test that passed its call but failed its teardown failed
    return SuiteResult(passed, failed, skipped, returncode)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("suite", choices=["aiohttp", "websockets"])
    parser.add_argument("checkout", nargs="?", help="websockets: a checkout at tag 17.0.1")
    parser.add_argument("--plain", action="store_true", help="a plain loop (the kernel's network)")
    parser.add_argument("--uvloop", action="store_true", help="uvloop as the (base) loop")
    parser.add_argument("--bounded", action="store_true", help="aiohttp: CI's bounded selection")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    options = parser.parse_args()
    if options.suite == "aiohttp":
        work = pathlib.Path(tempfile.mkdtemp(prefix="aiohttp-suite-"))
        root = fetch_aiohttp_tests(work)
        files = AIOHTTP_BOUNDED if options.bounded else AIOHTTP_FILES
        paths = [f"tests/{name}" for name in files]
    else:
        if not options.checkout:
            parser.error("websockets needs the path of a checkout of its repository at tag 17.0.1")
        installed = importlib.metadata.version("websockets")
        if installed != WEBSOCKETS_VERSION:
            parser.error(f"websockets {installed} is installed; the suite is pinned to {WEBSOCKETS_VERSION}")
        root, paths = pathlib.Path(options.checkout).resolve(), WEBSOCKETS_PATHS
    result = run_suite(root, paths, stack=not options.plain, uvloop=options.uvloop, extra=options.pytest_args)
    where = "plain loop" if options.plain else "aionetstack"
    print(f"{options.suite} on {where}{' (uvloop)' if options.uvloop else ''}: {result.summary}")
    for name, message in sorted(result.failed.items()):
        print(f"  FAILED {name}: {message}")


if __name__ == "__main__":
    main()
