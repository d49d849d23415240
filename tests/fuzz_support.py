"""What the fuzzing scripts (tests/fuzz_run_files.py, tests/fuzz_token_cache.py) share: JSON values to write
into a file, fresh copies of a folder to damage, and the check that a damaged copy is read or refused in one line.

Imported inside their `main`, after the address-space limit is set; it imports hypothesis and charrnn only
when called.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any


def json_values(key_size: int, *more: Any) -> Any:
    """A hypothesis strategy of JSON values: scalars (None, booleans, huge integers, any float, short text, and
    the strategies `more`), and lists and objects of them (keys of at most `key_size` characters)."""
    from hypothesis import strategies as st

    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-(2**70), 2**70)
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=8)
    )
    for strategy in more:
        scalars = scalars | strategy
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=key_size), inner, max_size=3),
        max_leaves=6,
    )


class Copies:
    """Fresh copies of the folder `source` under `work`, named `prefix`0, `prefix`1, ..."""

    def __init__(self, source: Path, work: Path, prefix: str) -> None:
        self.source, self.work, self.prefix = source, work, prefix
        self.counter = itertools.count()

    def fresh(self) -> Path:
        target = self.work / f"{self.prefix}{next(self.counter)}"
        shutil.copytree(self.source, target)
        return target


def check_damaged(target: Path, read: Callable[[Path], Any], *expected: Any) -> None:
    """`read(target)` must succeed (and give `expected`, when given) or raise a `CharRNNError` of one line;
    anything else fails. `target` is removed either way."""
    from charrnn.core.errors import CharRNNError

    try:
        got = read(target)
        if expected:
            assert got == expected[0]
    except CharRNNError as exc:
        assert "\n" not in str(exc), str(exc)
    finally:
        shutil.rmtree(target, ignore_errors=True)
