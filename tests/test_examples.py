"""Every program in examples/ runs, as a user would run it, and prints what it promises.

Each example is started as its own process with this interpreter (``python examples/x.py``), so
it sees only the installed package, a fresh event loop and no pytest plugins. An example's
expected output is listed in ``EXPECTED``; one not listed must still exit 0, print something and
write nothing to stderr.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
#: Examples that need a real device and root: run end to end by a kernel-interop test instead.
RUN_ELSEWHERE = {"tun2socks.py": "tests/interop/test_forwarder_tun.py"}
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if p.name not in RUN_ELSEWHERE)

#: Exact stdout of the examples whose output is part of the documentation.
EXPECTED: dict[str, str] = {
    "echo.py": "b'hello'\n",  # the README's first example
}


def run_example(path: pathlib.Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PYTHONASYNCIODEBUG", None)
    env["PYTHONPATH"] = str(ROOT)  # the checkout's package, even without an editable install
    return subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
        check=False,
    )


def test_there_are_examples_and_the_readme_one_is_listed() -> None:
    names = {p.name for p in EXAMPLES}
    assert "echo.py" in names
    assert set(EXPECTED) <= names, f"EXPECTED names a missing example: {set(EXPECTED) - names}"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs_and_prints_what_it_promises(path: pathlib.Path) -> None:
    result = run_example(path)
    assert result.returncode == 0, f"{path.name} exited {result.returncode}:\n{result.stderr}"
    assert result.stderr == "", f"{path.name} wrote to stderr:\n{result.stderr}"
    expected = EXPECTED.get(path.name)
    if expected is not None:
        assert result.stdout == expected
    else:
        assert result.stdout.strip(), f"{path.name} printed nothing"


def test_examples_run_elsewhere_are_run_there() -> None:
    for example, test in RUN_ELSEWHERE.items():
        assert example in (ROOT / test).read_text(), f"{test} does not run {example}"


def test_readme_example_is_examples_echo() -> None:
    """The README's first code block is examples/echo.py (minus its docstring and spacing)."""
    readme = ROOT / "README.md"
    if not readme.exists():
        pytest.skip("no README.md")
    text = readme.read_text()
    start = text.find("```python\nimport asyncio\nimport aionetstack")
    assert start >= 0, "README lost its first example"
    block = text[start + len("```python\n") : text.index("```", start + 3)]
    example = (ROOT / "examples" / "echo.py").read_text()

    def code_lines(source: str) -> list[str]:
        lines = []
        for line in source.splitlines():
            code = line.split("#", 1)[0].rstrip()
            if code and not code.startswith('"""'):
                lines.append(" ".join(code.split()))
        return lines

    assert code_lines(block) == code_lines(example)
