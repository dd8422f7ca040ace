"""Request hooks composed into one: each runs, in order, whatever the others do."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from flask_observe.hooks import RequestRecord, compose


def _record() -> RequestRecord:
    return RequestRecord({"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, None)


def test_no_hook_is_none_and_one_hook_is_itself() -> None:
    def only(record: RequestRecord) -> None:
        """The one hook."""

    assert compose([]) is None
    assert compose([only]) is only


@pytest.mark.parametrize(("count", "broken"), [(c, b) for c in (2, 3, 4, 5) for b in range(c)])
def test_every_hook_runs_in_order_and_a_failing_one_stops_none(
    count: int, broken: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Two, three and four (the unrolled chains) or more hooks: each gets the record in turn;
    any one of them raising is logged, and the ones after it still run."""
    seen: list[tuple[int, RequestRecord]] = []

    def make(index: int) -> Callable[[RequestRecord], None]:
        def hook(record: RequestRecord) -> None:
            seen.append((index, record))
            if index == broken:
                raise RuntimeError(f"hook {index} broke")

        hook.__qualname__ = f"hook_{index}"
        return hook

    composed = compose([make(i) for i in range(count)])
    assert composed is not None
    record = _record()
    with caplog.at_level(logging.ERROR, logger="flask_observe"):
        composed(record)
    assert seen == [(i, record) for i in range(count)]
    (failure,) = [r for r in caplog.records if f"hook_{broken}" in r.getMessage()]
    assert failure.exc_info is not None
    assert failure.exc_info[0] is RuntimeError
