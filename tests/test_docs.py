"""Code in the documentation runs, so it cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).parent.parent / "docs"


def test_the_testing_guide_is_a_passing_test_module(tmp_path: Path) -> None:
    text = (DOCS / "guides" / "testing.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    module = tmp_path / "test_service.py"
    module.write_text("\n\n".join(blocks), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "trio", "-o", "trio_mode=true", module.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b1[0-9] passed\b", result.stdout), result.stdout
