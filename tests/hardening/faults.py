"""Faults at every position of recorded sessions, and replays of them."""

from __future__ import annotations

import os
import time

from tests.faultsweep import FAULT_KINDS, SweepResult, World, replays, sweep
from tests.hardening.report import Row

# The protocols a deployment may use: the default, a psk one with the other
# cipher and hash, and IK, whose first message can be replayed.
_PROTOCOLS = {
    "XX/AESGCM/SHA256": {},
    "XXpsk3/ChaChaPoly/BLAKE2s": {
        "protocol": "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s",
        "psk": os.urandom(32),
    },
    "IK/AESGCM/SHA512": {"protocol": "Noise_IK_25519_AESGCM_SHA512"},
}


def _row(check: str, result: SweepResult, seconds: float) -> Row:
    return Row(
        "faults",
        check,
        tried=result.runs,
        held=result.held,
        lost=result.lost,
        unexpected=result.unexpected,
        note=f"{seconds:.0f} s",
    )


def run(quick: bool) -> list[Row]:
    stride = 8 if quick else 1
    rows = []
    for label, options in _PROTOCOLS.items():
        world = World(**options)  # type: ignore[arg-type]
        started = time.perf_counter()
        result = sweep(world, list(FAULT_KINDS), stride=stride)
        where = "every offset" if stride == 1 else f"every {stride}th offset"
        check = f"{len(FAULT_KINDS)} fault kinds at {where}, both ways, {label}"
        rows.append(_row(check, result, time.perf_counter() - started))
        started = time.perf_counter()
        count = 10 if quick else 200
        result = replays(world, count)
        rows.append(
            _row(f"replayed client sessions, {label}", result, time.perf_counter() - started)
        )
    return rows
