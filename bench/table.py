"""Plain-text tables and target checks (PASS/MISS) for the benchmark report."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """One target: ``figure`` compared with ``limit`` (``<=`` or ``<``)."""

    target: str
    figure: float
    limit: float
    op: str = "<="
    unit: str = "x"

    @property
    def passed(self) -> bool:
        return self.figure <= self.limit if self.op == "<=" else self.figure < self.limit

    def row(self) -> list[str]:
        return [self.target, f"{self.figure:.3g}{self.unit}", f"{self.op} {self.limit:g}{self.unit}",
                "PASS" if self.passed else "MISS"]


@dataclass(frozen=True)
class AtLeast(Check):
    """A target a figure must reach (``>=``)."""

    op: str = ">="

    @property
    def passed(self) -> bool:
        return self.figure >= self.limit


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        first, *rest = [str(c) for c in cells]
        return "  ".join([first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:]))]).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def format_checks(checks: list[Check]) -> str:
    return format_table(["target", "figure", "limit", "verdict"], [c.row() for c in checks])


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f}"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f}"


def ratio(x: float) -> str:
    return f"{x:.2f}"


@dataclass
class Section:
    """What one benchmark section prints: notes, measurement tables, and its target checks."""

    title: str
    notes: list[str]
    tables: list[tuple[str, list[str], list[list[str]]]]  # (caption, header, rows)
    checks: list[Check]

    def render(self) -> str:
        parts = [f"== {self.title} ==", *self.notes]
        for caption, header, rows in self.tables:
            parts += ["", caption, format_table(header, rows)]
        parts += ["", format_checks(self.checks)]
        return "\n".join(parts)
