"""Fuzzing every parser a peer or a file can reach: tests/test_fuzz.py, counted.

The module runs in this process under pytest, with the "long" hypothesis
profile (20,000 examples per test, fewer for tests whose examples each run
handshakes or write files) or, quick, the default one (200). The counts come
from the run itself: the test module counts every example it runs, per
parser, and a small plugin notes how each test ended and how long it took.
A test marked ``xfail`` has found a bug not fixed yet: it counts as
unexpected.

``python -m tests.hardening.fuzz [--quick]`` prints this part's table alone.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import settings

from tests.hardening.report import Row, table

_MODULE = "tests.test_fuzz"
_PATH = Path(__file__).resolve().parent.parent / "test_fuzz.py"


class _Outcomes:
    """A pytest plugin: the fuzz module pytest imported, and how each test ended."""

    def __init__(self) -> None:
        self.module: ModuleType | None = None
        self.outcomes: dict[str, str] = {}
        self.seconds: dict[str, float] = {}

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            module = getattr(item, "module", None)
            if module is not None and module.__name__ == _MODULE:
                self.module = module
        if self.module is not None:
            self.module.reset_counts()  # whatever an earlier run in this process left

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        name = report.nodeid.rpartition("::")[2]
        self.seconds[name] = self.seconds.get(name, 0.0) + report.duration
        if hasattr(report, "wasxfail"):
            # Failed as the known bug does (reported skipped), or passed regardless.
            outcome = "xfailed" if report.skipped else "xpassed"
        elif report.failed:
            outcome = "failed"
        elif report.when == "call" and report.passed:
            outcome = "passed"
        else:
            return
        if self.outcomes.get(name) in (None, "passed"):
            self.outcomes[name] = outcome


def _run_pytest(profile: str) -> tuple[int, _Outcomes]:
    # tests/conftest.py registers the profiles. The fuzz module reads its
    # example budgets from the active profile when imported, so it is
    # imported afresh (by pytest) under the profile asked for.
    importlib.import_module("tests.conftest")
    before = os.environ.get("HYPOTHESIS_PROFILE")
    os.environ["HYPOTHESIS_PROFILE"] = profile
    settings.load_profile(profile)
    sys.modules.pop(_MODULE, None)
    plugin = _Outcomes()
    try:
        # Hypothesis is imported already (above), so pytest cannot rewrite its
        # plugin's asserts, and says so: nothing of ours is concerned.
        quiet = ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
        code = pytest.main([str(_PATH), "-q", "-p", "no:cacheprovider", *quiet], plugins=[plugin])
    finally:
        if before is None:
            os.environ.pop("HYPOTHESIS_PROFILE", None)
        else:
            os.environ["HYPOTHESIS_PROFILE"] = before
        settings.load_profile(before or "default")
    return int(code), plugin


def run(quick: bool) -> list[Row]:
    profile = "default" if quick else "long"
    code, plugin = _run_pytest(profile)
    module = plugin.module
    if module is None or not plugin.outcomes:
        return [Row("fuzz", "tests/test_fuzz.py did not run", 0, 0, 0, 1, f"pytest exit {code}")]
    parsers: dict[str, str] = module.PARSERS
    tried: Counter[str] = module.TRIED
    failed: Counter[str] = module.FAILED
    lost: Counter[str] = module.LOST
    rows = []
    for parser in dict.fromkeys(parsers.values()):
        tests = [name for name, of in parsers.items() if of == parser]
        outcomes = Counter(plugin.outcomes.get(name, "not run") for name in tests)
        seconds = sum(plugin.seconds.get(name, 0.0) for name in tests)
        rows.append(
            Row(
                "fuzz",
                parser,
                tried=tried[parser],
                held=tried[parser] - failed[parser],
                lost=lost[parser],
                unexpected=len(tests) - outcomes["passed"],
                note=_note(profile, len(tests), outcomes, seconds),
            )
        )
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        rows.append(Row("fuzz", "the pytest run itself", 0, 0, 0, 1, f"pytest exit {code}"))
    return rows


def _note(profile: str, tests: int, outcomes: Counter[str], seconds: float) -> str:
    parts = [f"hypothesis, {profile} profile, {tests} test{'s' * (tests != 1)}, {seconds:.0f} s"]
    for outcome, meaning in (
        ("xfailed", "known bug{s} (xfail)"),
        ("failed", "FAILED"),
        ("xpassed", "xpassed: the bug is gone, drop the xfail"),
        ("not run", "not run"),
    ):
        if count := outcomes[outcome]:
            parts.append(f"{count} {meaning.format(s='s' * (count != 1))}")
    return "; ".join(parts)


if __name__ == "__main__":
    print(table(run(quick="--quick" in sys.argv[1:])))
