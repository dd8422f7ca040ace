"""Bytecodes executed per request, by configuration: a cost measure that machine noise does not
move.

Wall-clock µs (``overhead.py``) is what users pay, but on a shared 2-vCPU machine two runs of
the same configuration can differ by more than the effect being looked for. The number of
Python bytecode instructions one request executes is the same on every run, so it shows
whether a change made the Python-level work smaller. It does not see C code (orjson, the
regex engine), system calls or cache effects: read it beside ``overhead.py``, never instead.

Each configuration of ``configurations.py`` is set up in a fresh interpreter, warmed up with
300 requests, then one request is traced with ``sys.settrace`` and per-opcode events::

    python benchmarks/opcount.py                        # the correlation/logging configurations
    python benchmarks/opcount.py --silent-view --top 15 # the view writes no line; top functions
    python benchmarks/opcount.py --suite request-path   # issue 17's configurations
"""

from __future__ import annotations

import collections
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

import harness
from configurations import BASE, CONFIGS, OBSERVE, PACKAGES, PEER, REQUEST_PATH, SUITES, make_app
from overhead import CHILD_ENV

DEFAULT_CONFIGS = SUITES["logging"]


def count_one(name: str, view_logs: bool, warmup: int = 300) -> dict[str, Any]:
    """Opcodes of one request of configuration ``name``, in total and by function."""
    app = make_app(view_logs)
    with tempfile.TemporaryDirectory() as log_dir:
        CONFIGS[name].setup(app, Path(log_dir))
        client = harness.WsgiClient(app, REQUEST_PATH, environ_base={"REMOTE_ADDR": "1"})
        client.warm_up(warmup)
        counts: collections.Counter[str] = collections.Counter()
        client_code = harness.__file__

        def tracer(frame: FrameType, event: str, arg: Any) -> Any:
            if frame.f_code.co_filename == client_code:
                return tracer  # the harness' client: not the request's own work
            frame.f_trace_opcodes = True
            if event == "opcode":
                code = frame.f_code
                where = code.co_filename.rsplit("site-packages/", 1)[-1]
                counts[f"{where}:{code.co_name}"] += 1
            return tracer

        sys.settrace(tracer)
        try:
            client.get()
        finally:
            sys.settrace(None)
    return {"config": name, "total": sum(counts.values()), "functions": dict(counts)}


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__, rounds=None)  # deterministic: one run each
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS), help="comma-separated")
    parser.add_argument("--suite", choices=sorted(SUITES), help="a named set of configurations")
    parser.add_argument("--silent-view", action="store_true", help="the view writes no line")
    parser.add_argument("--top", type=int, default=0, help="show the N busiest functions")
    args = parser.parse_args(argv)
    if args.child:
        harness.child_exit(count_one(args.child, not args.silent_view))
    names = (
        list(SUITES[args.suite]) if args.suite else harness.select(parser, args.configs, CONFIGS)
    )
    flags = ["--silent-view"] if args.silent_view else []
    env = harness.Environment.now(PACKAGES)
    runs = {name: [harness.run_child(__file__, name, flags, env=CHILD_ENV)] for name in names}
    base = runs[BASE][0]["total"] if BASE in runs else None
    summary = {
        name: {
            "total": result["total"],
            "added_vs_bare": result["total"] - base if base is not None else None,
        }
        for name, (result,) in runs.items()
    }
    lines = [
        harness.table(
            ["config", "opcodes", "+ vs bare"],
            [
                [f"`{name}`", row["total"], "n/a" if base is None else f"+{row['added_vs_bare']}"]
                for name, row in summary.items()
            ],
        )
    ]
    if base is not None and OBSERVE in summary and PEER in summary:
        ratio = summary[OBSERVE]["added_vs_bare"] / summary[PEER]["added_vs_bare"]
        lines.append(f"\nratio {OBSERVE} / {PEER} (added over bare): {ratio:.2f}")
    for name, (result,) in runs.items() if args.top else ():
        lines.append(f"\n{name}: busiest functions")
        busiest = collections.Counter(result["functions"]).most_common(args.top)
        lines += [f"{count:6d}  {function}" for function, count in busiest]
    return harness.finish(
        "opcount",
        as_json=args.json,
        settings={"view_logs": not args.silent_view, "warmup": 300},
        environment=env,
        summary=summary,
        runs=runs,
        title="Python opcodes per request (view writes a line:"
        f" {'no' if args.silent_view else 'yes'})",
        text="\n".join(lines),
    )


if __name__ == "__main__":
    sys.exit(main())
