"""One row per check, and the table they make."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """What one check did, and what went wrong (``lost`` and ``unexpected`` must be 0)."""

    area: str  # faults, fuzz, load, soak, kill
    check: str  # what was done, in a few words
    tried: int  # connections, faults, inputs, kills...
    held: int  # of those, how many ended as promised (served, refused cleanly, typed error)
    lost: int  # data lost or altered, of what was acknowledged
    unexpected: int  # untyped errors, crashes, hangs
    note: str = ""  # the figures that go with it

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.unexpected == 0 and self.held == self.tried


_HEADER = ("area", "check", "tried", "held", "lost", "unexpected", "")


def table(rows: Sequence[Row]) -> str:
    cells = [_HEADER] + [
        (
            row.area,
            row.check,
            f"{row.tried:,}",
            f"{row.held:,}",
            f"{row.lost:,}",
            f"{row.unexpected:,}",
            row.note,
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_HEADER))]
    lines = []
    for line in cells:
        parts = [
            cell.ljust(width) if i in (0, 1, 6) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
    verdict = "nothing lost, nothing unexpected" if all(r.ok for r in rows) else "FAILED"
    lines.append("")
    lines.append(
        f"{len(rows)} checks; {sum(r.tried for r in rows):,} tried; "
        f"lost {sum(r.lost for r in rows)}; unexpected {sum(r.unexpected for r in rows)}: {verdict}"
    )
    return "\n".join(lines)
