"""Loading the third-party test vectors kept in tests/vectors/ (see its README)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).parent / "vectors"


@cache
def load(relative_path: str) -> Any:
    with open(VECTORS / relative_path, encoding="utf-8") as file:
        return json.load(file)


def noise_vectors(filename: str) -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = load(f"noise/{filename}")["vectors"]
    return vectors


def wycheproof_tests(filename: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every (group, test) pair of a Wycheproof file."""
    data = load(f"wycheproof/{filename}")
    return [(group, test) for group in data["testGroups"] for test in group["tests"]]
