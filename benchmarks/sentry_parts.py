"""What the Sentry sink adds to a successful request, part by part, timed directly.

``overhead.py`` measures whole requests; on a shared machine its rounds spread by hundreds of
µs, more than the few µs this is about. Here each added part runs alone in a tight loop (the
fastest of several repeats: other work on a machine only ever adds time):

- ``wsgi call``: an app's WSGI call, bare and inside the Sentry sink's scope wrapper (the
  binding of the app's client, a fresh isolation scope and a breadcrumb buffer, then their
  resets);
- ``log line``: one INFO record through the capture handler, with and without a request's
  breadcrumb buffer bound (the append).

    python benchmarks/sentry_parts.py [--number 200000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import collections
import logging
import timeit

from flask import Flask

from flask_observe import Observe
from flask_observe.errors.handler import CaptureHandler, crumbs
from flask_observe.errors.hooks import SentryScope
from flask_observe.errors.reporter import ErrorReporter

DEAD_DSN = "http://public@127.0.0.1:9/1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--number", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    app = Flask("parts")
    app.config.update(OBSERVE_LOG_STDOUT=False, OBSERVE_SENTRY_DSN=DEAD_DSN)
    Observe(app)
    reporter = app.extensions["observe"].get(ErrorReporter)

    def inner(environ: dict[str, str], start_response: object) -> None:
        return None

    scoped = SentryScope(inner, reporter)
    environ: dict[str, str] = {}
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, CaptureHandler))
    record = logging.getLogger("view").makeRecord(
        "view", logging.INFO, __file__, 1, "user fetched", (), None
    )

    def best(function: object) -> float:
        times = timeit.repeat(function, number=args.number, repeat=args.repeat)  # type: ignore[arg-type]
        return min(times) / args.number * 1e6

    bare = best(lambda: inner(environ, None))
    wrapped = best(lambda: scoped(environ, None))
    no_buffer = best(lambda: handler.handle(record))
    token = crumbs.set(collections.deque(maxlen=100))
    try:
        appended = best(lambda: handler.handle(record))
    finally:
        crumbs.reset(token)
    print("| part | µs, fastest of repeats |")
    print("| --- | --- |")
    print(f"| wsgi call, bare | {bare:.3f} |")
    print(f"| wsgi call, in the Sentry scope | {wrapped:.3f} (+{wrapped - bare:.3f}) |")
    print(f"| log line, no breadcrumb buffer | {no_buffer:.3f} |")
    print(f"| log line, appended to the buffer | {appended:.3f} (+{appended - no_buffer:.3f}) |")
    print(f"\nper request with one log line: +{wrapped - bare + appended:.2f} µs")


if __name__ == "__main__":
    main()
