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


@pytest.mark.parametrize("count", [2, 3, 4])
def test_every_hook_runs_in_order_and_a_failing_one_stops_none(
    count: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Two, three (the unrolled chain) or more hooks: each gets the record in turn; the
    middle one raising is logged, and the ones after it still run."""
    seen: list[tuple[int, RequestRecord]] = []

    def make(index: int) -> Callable[[RequestRecord], None]:
        def hook(record: RequestRecord) -> None:
            seen.append((index, record))
            if index == 1:
                raise RuntimeError("hook 1 broke")

        hook.__qualname__ = f"hook_{index}"
        return hook

    composed = compose([make(i) for i in range(count)])
    assert composed is not None
    record = _record()
    with caplog.at_level(logging.ERROR, logger="flask_observe"):
        composed(record)
    assert seen == [(i, record) for i in range(count)]
    (failure,) = [r for r in caplog.records if "hook_1" in r.getMessage()]
    assert failure.exc_info is not None
    assert failure.exc_info[0] is RuntimeError
