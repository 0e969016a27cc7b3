"""Sweeps over every service and every format: all their cases in the whole suite, a covering
set of them in the fast part.

The whole suite (every database, the primary Python x Django combination) runs every case of
a sweep. The fast part (``-m "not slow"``, which every other combination of the matrix runs)
runs the cases that first bring each trait (by default each parameter's value: every service
once, every format once); the others are marked ``slow``. What a Django or DRF release changes
shows in code every service and every format goes through, which the covering set still runs.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import pytest
from _pytest.mark import ParameterSet


def covering(
    cases: Iterable[Sequence[Any] | ParameterSet],
    traits: Callable[[Sequence[Any]], Iterable[Hashable]] | None = None,
) -> list[ParameterSet]:
    """``cases`` as ``pytest.param``s, marked ``slow`` unless a case brings a trait no earlier
    case had (``traits(values)``: the values by default, each counted per position)."""
    seen: set[tuple[int, Hashable]] = set()
    params = []
    for case in cases:
        param = case if isinstance(case, ParameterSet) else pytest.param(*case)
        found = traits(param.values) if traits else param.values
        new = {(position, trait) for position, trait in enumerate(found)} - seen
        seen |= new
        marks = () if new else (pytest.mark.slow,)
        params.append(pytest.param(*param.values, marks=(*param.marks, *marks), id=param.id))
    return params
