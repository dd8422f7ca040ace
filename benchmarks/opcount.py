"""Bytecodes executed per request, by configuration: a cost measure that machine noise does not
move.

Wall-clock µs (``overhead.py``) is what users pay, but on a shared 2-vCPU machine two runs of
the same configuration can differ by more than the effect being looked for. The number of
Python bytecode instructions one request executes is the same on every run, so it shows
whether a change made the Python-level work smaller. It does not see C code (orjson, the
regex engine), system calls or cache effects: read it beside ``overhead.py``, never instead.

Each configuration of ``overhead.py`` is set up in a fresh interpreter, warmed up with 300
requests, then one request is traced with ``sys.settrace`` and per-opcode events::

    python benchmarks/opcount.py                        # the correlation/logging configurations
    python benchmarks/opcount.py --silent-view --top 15 # the view writes no line; top functions
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

DEFAULT_CONFIGS = (
    "bare",
    "bare+json-logs",
    "observe-correlation",
    "observe-no-access",
    "observe",
    "peer:request-id",
    "peer:request-id+json-access",
)
RESULT_PREFIX = "OPCOUNT "


def count_one(name: str, view_logs: bool, warmup: int = 300) -> dict[str, Any]:
    """Opcodes of one request of configuration ``name``, in total and by function."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import overhead
    from werkzeug.test import EnvironBuilder

    app = overhead.make_app(view_logs)
    with tempfile.TemporaryDirectory() as log_dir:
        overhead.CONFIGS[name].setup(app, Path(log_dir))
        builder = EnvironBuilder(path=overhead.REQUEST_PATH, environ_base={"REMOTE_ADDR": "1"})
        environ = builder.get_environ()
        builder.close()

        def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            return lambda data: None

        def request() -> None:
            body = app(environ.copy(), start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()

        for _ in range(warmup):
            request()
        counts: collections.Counter[str] = collections.Counter()

        def tracer(frame: FrameType, event: str, arg: Any) -> Any:
            frame.f_trace_opcodes = True
            if event == "opcode":
                code = frame.f_code
                where = code.co_filename.rsplit("site-packages/", 1)[-1]
                counts[f"{where}:{code.co_name}"] += 1
            return tracer

        sys.settrace(tracer)
        try:
            request()
        finally:
            sys.settrace(None)
    return {"config": name, "total": sum(counts.values()), "functions": dict(counts)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS))
    parser.add_argument("--silent-view", action="store_true", help="the view writes no line")
    parser.add_argument("--top", type=int, default=0, help="show the N busiest functions")
    parser.add_argument("--config", help=argparse.SUPPRESS)  # child: one configuration
    args = parser.parse_args(argv)
    if args.config:
        print(RESULT_PREFIX + json.dumps(count_one(args.config, not args.silent_view)))
        return 0
    results = {}
    for name in (n.strip() for n in args.configs.split(",") if n.strip()):
        command = [sys.executable, __file__, "--config", name]
        if args.silent_view:
            command.append("--silent-view")
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"{name} failed:\n{proc.stderr[-2000:]}")
        results[name] = json.loads(lines[-1][len(RESULT_PREFIX) :])
    base = results.get("bare", {}).get("total")
    print(f"Python opcodes per request (view writes a line: {'no' if args.silent_view else 'yes'})")
    print("| config | opcodes | + vs bare |")
    print("| --- | --- | --- |")
    for name, result in results.items():
        added = f"+{result['total'] - base}" if base is not None else "n/a"
        print(f"| `{name}` | {result['total']} | {added} |")
    if base is not None and "observe" in results and "peer:request-id+json-access" in results:
        ours = results["observe"]["total"] - base
        peer = results["peer:request-id+json-access"]["total"] - base
        print(f"\nratio observe / peer:request-id+json-access (added over bare): {ours / peer:.2f}")
    if args.top:
        for name, result in results.items():
            print(f"\n{name}: busiest functions")
            busiest = collections.Counter(result["functions"]).most_common(args.top)
            for function, count in busiest:
                print(f"{count:6d}  {function}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
