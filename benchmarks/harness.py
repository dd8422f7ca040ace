"""The harness every benchmark in this folder runs on.

What it gives a benchmark, so that each script only says what it measures:

- **a fresh interpreter per measurement**: the script re-invokes itself with ``--child NAME``
  (:func:`run_child`); the child prints one result line (:func:`child_exit`) and leaves without
  running exit hooks, so no patch, handler, registry or tracer provider carries over from one
  configuration to the next, and an exporter that cannot reach its collector does not hold the
  exit for its own timeout;
- **interleaved rounds** (:func:`run_rounds`): round 1 measures every configuration once, round
  2 again, ... with the order rotated (or reversed every other round), so drift on a shared
  machine hits every configuration alike;
- **in-process WSGI requests** (:class:`WsgiClient`): one environ built once, copied per request,
  the body consumed and ``close()`` called, as a WSGI server does minus the socket; warm-up
  requests first, then a timed loop;
- **statistics**: medians over rounds with min-max ranges (:func:`summarize`), percentiles;
- **budgets** (:class:`Budget`): a target on one figure (alone, over a baseline, or as a ratio
  to a named peer), judged on the medians and reported met/missed round by round;
- **output**: markdown tables (:func:`table`), one JSON document (:func:`report_json`), both
  through :func:`finish`, and the machine the numbers come from (:class:`Environment`).

The scripts run from a checkout (``python benchmarks/NAME.py``): this folder is on ``sys.path``
then, and the children get the checkout on ``PYTHONPATH`` so they measure the code next to them.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent
#: The child prints its result on one line starting with this, whatever else reaches stdout.
RESULT_PREFIX = "BENCH-RESULT "

#: A round's result per configuration, in round order.
Runs = dict[str, list[dict[str, Any]]]


# -- child processes ------------------------------------------------------------------------


class ChildFailed(RuntimeError):
    """A child exited non-zero or printed no result; the message ends with its stderr."""


def run_child(
    script: str | Path,
    name: str,
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run ``script --child name *args`` in a fresh interpreter and return its result.

    ``result["stray_output"]`` counts the characters the child wrote to stdout or stderr
    besides its result line: anything there means something logged to a terminal.

    :param env: variables set (or, with an empty value, removed) on top of this process's.
    :raises ChildFailed: the child failed or printed no result line.
    """
    child_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value:
            child_env[key] = value
        else:
            child_env.pop(key, None)
    path = child_env.get("PYTHONPATH")
    child_env["PYTHONPATH"] = str(ROOT) + (os.pathsep + path if path else "")
    command = [sys.executable, str(Path(script).resolve()), "--child", name, *args]
    proc = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=child_env,
        timeout=timeout,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise ChildFailed(
            f"{Path(script).name} --child {name} failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
    result["stray_output"] = len(proc.stdout) - len(lines[-1]) - 1 + len(proc.stderr)
    return result


def child_exit(result: Mapping[str, Any]) -> NoReturn:
    """Print ``result`` for :func:`run_child` and leave at once (no exit hooks: whatever the
    configuration left running is not part of the measurement)."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    sys.stderr.flush()
    os._exit(0)


# -- rounds ---------------------------------------------------------------------------------


def round_order(names: Sequence[str], index: int, order: str = "rotate") -> list[str]:
    """The order of round ``index`` (0-based): ``rotate`` starts one later each round,
    ``alternate`` reverses every other round."""
    if order == "rotate":
        shift = index % len(names) if names else 0
        return [*names[shift:], *names[:shift]]
    if order == "alternate":
        return list(names) if index % 2 == 0 else list(reversed(names))
    raise ValueError(f"unknown order {order!r} (rotate, alternate)")


def run_rounds(
    names: Sequence[str],
    rounds: int,
    measure: Callable[[str, int], dict[str, Any]],
    *,
    order: str = "rotate",
    describe: Callable[[dict[str, Any]], str] | None = None,
) -> Runs:
    """``measure(name, round_index)`` for every name, ``rounds`` times, interleaved.

    A progress line per measurement goes to stderr (with ``describe(result)`` when given).
    """
    runs: Runs = {name: [] for name in names}
    width = max((len(n) for n in names), default=0)
    for index in range(rounds):
        for name in round_order(names, index, order):
            result = measure(name, index)
            runs[name].append(result)
            text = f" {describe(result)}" if describe is not None else ""
            print(
                f"round {index + 1}/{rounds} {name:{width}}{text}",
                file=sys.stderr,
                flush=True,
            )
    return runs


# -- in-process WSGI ------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """A timed loop: each request's wall time, the loop's wall and process CPU time, and how
    often the other threads were woken meanwhile (:func:`other_threads_switches`)."""

    times_ns: list[int]
    wall_ns: int
    cpu_ns: int
    other_switches: int | None = None

    def stats(self) -> dict[str, float]:
        """Per-request figures in µs: mean, p50, p90, p99, max, loop wall time, CPU time; and
        the other threads' wake-ups per request (``woken``, where counted)."""
        times, n = self.times_ns, len(self.times_ns)

        def top(parts: int) -> float:  # the last cut point: p90 of 10 parts, p99 of 100
            return statistics.quantiles(times, n=parts)[-1] if n > 1 else float(times[0])

        return {
            "mean_us": sum(times) / n / 1000,
            "p50_us": statistics.median(times) / 1000,
            "p90_us": top(10) / 1000,
            "p99_us": top(100) / 1000,
            "max_us": max(times) / 1000,
            "loop_us": self.wall_ns / n / 1000,
            "cpu_us": self.cpu_ns / n / 1000,
            **({} if self.other_switches is None else {"woken": self.other_switches / n}),
        }


class WsgiClient:
    """Requests to a WSGI app in-process, as a WSGI server makes them minus the socket.

    The environ is built once (``werkzeug.test.EnvironBuilder``) and copied for each request;
    ``app(environ, start_response)`` is called, the body consumed and ``close()`` called.

    :param builder_args: passed to ``EnvironBuilder`` (``headers``, ``environ_base``,
        ``multithread``, ...).
    """

    def __init__(self, app: Any, path: str, **builder_args: Any) -> None:
        from werkzeug.test import EnvironBuilder

        builder = EnvironBuilder(path=path, **builder_args)
        try:
            self.environ: dict[str, Any] = builder.get_environ()
        finally:
            builder.close()
        self.app = app
        self.status = ""
        self.headers: list[tuple[str, str]] = []

    def _start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        self.status = status
        self.headers = headers
        return _discard

    @property
    def status_code(self) -> int:
        return int(self.status.split(" ", 1)[0])

    def header(self, name: str) -> str | None:
        """A header of the last response (case-insensitive), ``None`` if absent."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    def get(self) -> bytes:
        """One request; returns the body (status and headers in ``status``/``headers``)."""
        body = self.app(self.environ.copy(), self._start_response)
        try:
            return b"".join(body)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()

    def warm_up(self, requests: int) -> None:
        for _ in range(requests):
            self.get()

    def timed(self, requests: int) -> Timing:
        """``requests`` requests, each timed with ``perf_counter_ns`` from the call to the
        body's ``close()`` (the environ copy is outside the timed interval); a full collection
        first."""
        app, environ, start_response = self.app, self.environ, self._start_response
        clock = time.perf_counter_ns
        times = [0] * requests
        gc.collect()
        switches = other_threads_switches()
        cpu_start = time.process_time_ns()
        wall_start = clock()
        for i in range(requests):
            times[i] = timed_request(app, environ, start_response, clock)
        wall = clock() - wall_start
        cpu = time.process_time_ns() - cpu_start
        after = other_threads_switches()
        woken = None if switches is None or after is None else max(0, after - switches)
        return Timing(times, wall, cpu, woken)


def other_threads_switches() -> int | None:
    """Voluntary context switches of this process's threads but the calling one, so far (from
    ``/proc``; ``None`` where there is none): how often background threads went to sleep, each
    time to be woken again. A thread that waits for the GIL is woken at each release of it
    (docs/performance.md, "OTLP logs and metrics"), so this counts those wake-ups too."""
    me = threading.get_native_id()
    total = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    for task in tasks:
        if int(task) == me:
            continue
        try:
            with open(f"/proc/self/task/{task}/status") as status:
                for line in status:
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            continue  # the thread ended
    return total


def timed_request(app: Any, environ: dict[str, Any], start_response: Any, clock: Any) -> int:
    """One request to ``app``: ns from the call to the body's ``close()``, the environ
    copied before the clock starts."""
    env = environ.copy()
    t0 = clock()
    body = app(env, start_response)
    for _chunk in body:
        pass
    close = getattr(body, "close", None)
    if close is not None:
        close()
    return int(clock() - t0)


def _discard(data: bytes) -> None:
    pass


# -- statistics -----------------------------------------------------------------------------


def percentile(values: Iterable[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 <= q <= 1) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def pooled(results: Iterable[Mapping[str, Any]], key: str) -> list[float]:
    """Every sample of ``key`` (a list in each round's result), over all rounds."""
    return [v for r in results for v in r[key]]


def summarize(
    runs: Runs, key: str, also: Sequence[str] = (), last: Sequence[str] = ()
) -> dict[str, dict[str, Any]]:
    """Per configuration: ``median``, ``min``, ``max`` and ``rounds`` of ``key`` over rounds,
    the median over rounds of each key in ``also``, and the last round's value of each key
    in ``last``."""
    out: dict[str, dict[str, Any]] = {}
    for name, results in runs.items():
        values = [r[key] for r in results]
        row: dict[str, Any] = {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "rounds": values,
        }
        for extra in also:
            row[extra] = statistics.median(r[extra] for r in results)
        for extra in last:
            row[extra] = results[-1][extra]
        out[name] = row
    return out


@dataclass(frozen=True)
class Budget:
    """A target on one figure of a run, judged on the medians over rounds and round by round.

    The figure is ``key`` of ``ours``, less the same of ``base`` when one is named (what ours
    *adds*); with a ``peer``, it is divided by the peer's (less ``peer_base``, default
    ``base``): a ratio, ``peer / ours`` with ``invert`` (times to throughputs). It must be at
    most ``limit`` (at least, with ``at_least``). On the medians, the figure is built from the
    differences of the medians over rounds; per round, from that round's values. A ratio whose
    denominator is not positive is not a ratio: that round (or the verdict) counts as missed.

    :param cross_checks: other keys to give the same figure on (the medians over rounds of
        each round's value); ``"min"`` gives it on each configuration's fastest round of
        ``key`` (other work on a machine only ever adds time).
    """

    label: str
    ours: str
    limit: float
    peer: str | None = None
    base: str | None = None
    peer_base: str | None = None
    key: str = "mean_us"
    unit: str = "µs"
    at_least: bool = False
    invert: bool = False
    cross_checks: tuple[str, ...] = ()

    @property
    def needs(self) -> tuple[str, ...]:
        names = [self.ours, self.base, self.peer, self.peer_base or self.base]
        return tuple(dict.fromkeys(n for n in names if n is not None))

    def _figure(self, get: Callable[[str], float]) -> tuple[float, float | None, float | None]:
        """(ours, peer, figure) from one reading of each configuration."""
        ours = get(self.ours) - (get(self.base) if self.base else 0.0)
        if self.peer is None:
            return ours, None, ours
        peer_base = self.peer_base or self.base
        peer = get(self.peer) - (get(peer_base) if peer_base else 0.0)
        top, bottom = (peer, ours) if self.invert else (ours, peer)
        return ours, peer, (top / bottom if bottom > 0 else None)

    def _met(self, figure: float | None) -> bool:
        if figure is None:
            return False
        return figure >= self.limit if self.at_least else figure <= self.limit

    def evaluate(self, runs: Runs) -> dict[str, Any]:
        """The verdict as a JSON-able dict (``skipped`` if a configuration was not run)."""
        out: dict[str, Any] = {k: v for k, v in asdict(self).items() if v not in (None, ())}
        missing = [n for n in self.needs if n not in runs]
        if missing:
            out["skipped"] = f"needs {', '.join(missing)}"
            return out

        def median_of(key: str) -> Callable[[str], float]:
            return lambda name: statistics.median(r[key] for r in runs[name])

        ours, peer, figure = self._figure(median_of(self.key))
        rounds = min(len(runs[n]) for n in self.needs)
        per_round = [
            self._figure(lambda name, i=i: runs[name][i][self.key])[2] for i in range(rounds)
        ]
        out.update(
            ours_value=ours,
            peer_value=peer,
            figure=figure,
            met=self._met(figure),
            per_round=per_round,
            per_round_met=[self._met(f) for f in per_round],
            rounds_met=sum(self._met(f) for f in per_round),
            per_round_median=statistics.median(f for f in per_round if f is not None)
            if any(f is not None for f in per_round)
            else None,
        )
        cross: dict[str, float | None] = {}
        for key in self.cross_checks:
            if key == "min":
                cross[key] = self._figure(lambda name: min(r[self.key] for r in runs[name]))[2]
            else:
                cross[key] = self._figure(median_of(key))[2]
        if cross:
            out["cross_checks"] = cross
        return out


def _number(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _amount(value: float) -> str:
    """A measured amount: one decimal from 100 up, two from 1, three significant digits below."""
    size = abs(value)
    if size >= 100:
        return f"{value:.1f}"
    return f"{value:.2f}" if size >= 1 else f"{value:.3g}"


def render_budget(verdict: Mapping[str, Any]) -> str:
    """One line for the verdict, then one with each round's figure marked met or missed."""
    label = verdict["label"]
    if "skipped" in verdict:
        return f"BUDGET {label}: not evaluated ({verdict['skipped']})"
    unit = verdict.get("unit", "")
    sign = "≥" if verdict.get("at_least") else "≤"

    def term(name: str, base: str | None, value: float) -> str:
        if base:
            return f"`{name}` over `{base}` adds {_amount(value)} {unit}"
        return f"`{name}` {_amount(value)} {unit}"

    parts = [term(verdict["ours"], verdict.get("base"), verdict["ours_value"])]
    if "peer" in verdict:
        base = verdict.get("peer_base", verdict.get("base"))
        parts.append(term(verdict["peer"], base, verdict["peer_value"]))
        kind = "ratio" if not verdict.get("invert") else "ratio (peer/ours)"
        figure = f" → {kind} {_number(verdict['figure'])}"
    else:
        figure = ""
    line = (
        f"BUDGET {label}: {', '.join(parts)}{figure} (budget {sign} {verdict['limit']:g}):"
        f" {'MET' if verdict['met'] else 'MISSED'}"
    )
    marks = ", ".join(
        f"{_number(f)} {'met' if met else 'MISSED'}"
        for f, met in zip(verdict["per_round"], verdict["per_round_met"], strict=True)
    )
    line += (
        f"\n  per round (median {_number(verdict['per_round_median'])}, met in"
        f" {verdict['rounds_met']}/{len(verdict['per_round'])}): {marks}"
    )
    for key_name, value in verdict.get("cross_checks", {}).items():
        where = "each configuration's fastest round" if key_name == "min" else f"`{key_name}`"
        line += f"\n  (cross-check) the same on {where}: {_number(value)}"
    return line


# -- output ---------------------------------------------------------------------------------


def table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table."""
    lines = [head, ["---"] * len(head), *rows]
    return "\n".join("| " + " | ".join(str(c) for c in row) + " |" for row in lines)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def git_commit() -> str | None:
    """The commit of this checkout, ``+dirty`` if flask_observe/ has uncommitted edits."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "flask_observe"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def versions(packages: Iterable[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for package in packages:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


@dataclass
class Environment:
    """The machine and software a run measured, with the load before and after it."""

    packages: dict[str, str | None]
    commit: str | None
    cpu: str
    cpus: int | None
    python: str
    implementation: str
    platform: str
    loadavg_start: tuple[float, ...]
    loadavg_end: tuple[float, ...] = ()
    seconds: float = 0.0
    extra: dict[str, Any] | None = None
    #: ``time.monotonic()`` when the run started (not reported).
    started: float = field(default_factory=time.monotonic, repr=False)

    @classmethod
    def now(cls, packages: Iterable[str] = (), **extra: Any) -> Environment:
        return cls(
            packages=versions(("Flask", "Werkzeug", "flask-observe", *packages)),
            commit=git_commit(),
            cpu=cpu_model(),
            cpus=os.cpu_count(),
            python=platform.python_version(),
            implementation=platform.python_implementation(),
            platform=platform.platform(),
            loadavg_start=os.getloadavg(),
            extra=extra or None,
        )

    def finish(self) -> None:
        """Record the load at the end and the seconds the run took."""
        self.loadavg_end = os.getloadavg()
        self.seconds = round(time.monotonic() - self.started, 1)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "started"}

    def describe(self) -> str:
        load = f"load {self.loadavg_start[0]:.2f}"
        if self.loadavg_end:
            load += f" → {self.loadavg_end[0]:.2f}, {self.seconds} s"
        packages = ", ".join(f"{k} {v}" for k, v in self.packages.items() if v is not None)
        return (
            f"{self.cpu} ({self.cpus} CPUs), {self.implementation} {self.python},"
            f" {self.platform}; {load}; flask_observe at {self.commit or 'unknown commit'}\n"
            f"{packages}"
        )


def report_json(
    benchmark: str,
    *,
    settings: Mapping[str, Any],
    environment: Environment,
    summary: Mapping[str, Any],
    runs: Runs,
    budgets: Sequence[Mapping[str, Any]] = (),
    configs: Mapping[str, str] | None = None,
    **extra: Any,
) -> str:
    """The one JSON document every benchmark prints with ``--json``."""
    document = {
        "benchmark": benchmark,
        "settings": dict(settings),
        "environment": environment.as_dict(),
        "configs": dict(configs or {}),
        "summary": summary,
        "budgets": list(budgets),
        **extra,
        "runs": runs,
    }
    return json.dumps(document, indent=2)


def judge(budgets: Iterable[Budget], runs: Runs) -> list[dict[str, Any]]:
    """The verdict of each budget whose configurations all ran."""
    return [b.evaluate(runs) for b in budgets if all(n in runs for n in b.needs)]


def finish(
    benchmark: str,
    *,
    as_json: bool,
    settings: Mapping[str, Any],
    environment: Environment,
    summary: Mapping[str, Any],
    runs: Runs,
    text: str,
    title: str | None = None,
    verdicts: Sequence[Mapping[str, Any]] = (),
    configs: Mapping[str, str] | None = None,
    **extra: Any,
) -> int:
    """Print the report: the JSON document, or ``title``, the machine, ``text`` (the
    benchmark's tables), a warning if a child wrote to a terminal, and the budgets.

    Closes ``environment`` (the load at the end, the seconds since it was made) first."""
    if not environment.loadavg_end:
        environment.finish()
    if as_json:
        print(
            report_json(
                benchmark,
                settings=settings,
                environment=environment,
                summary=summary,
                runs=runs,
                budgets=verdicts,
                configs=configs,
                **extra,
            )
        )
        return 0
    if title:
        print(title)
    print(environment.describe())
    print()
    print(text)
    warning = stray_warning(runs)
    if warning:
        print(f"\n{warning}")
    for verdict in verdicts:
        print()
        print(render_budget(verdict))
    return 0


# -- command line ---------------------------------------------------------------------------


def parser(doc: str | None, *, rounds: int | None = 5) -> argparse.ArgumentParser:
    """The options every benchmark has: ``--rounds`` (unless ``rounds`` is ``None``: one run
    each), ``--json`` and the hidden ``--child``."""
    first = (doc or "").strip().split("\n\n")[0]
    out = argparse.ArgumentParser(
        description=first, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    if rounds is not None:
        out.add_argument("--rounds", type=int, default=rounds, help="interleaved rounds")
    out.add_argument("--json", action="store_true", help="print one JSON document")
    out.add_argument("--child", help=argparse.SUPPRESS)
    return out


def add_configs_option(out: argparse.ArgumentParser, known: Iterable[str]) -> None:
    out.add_argument("--configs", help=f"comma-separated subset of: {', '.join(known)}")


def select(out: argparse.ArgumentParser, wanted: str | None, known: Sequence[str]) -> list[str]:
    """The names in ``wanted`` (comma-separated; all of ``known`` if empty), checked."""
    if not wanted:
        return list(known)
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        out.error(f"unknown configuration(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return list(dict.fromkeys(names))


def stray_warning(runs: Runs) -> str | None:
    """A warning naming the configurations whose child wrote to stdout/stderr, if any."""
    stray = [n for n, results in runs.items() if any(r.get("stray_output") for r in results)]
    if not stray:
        return None
    return f"warning: output reached stdout/stderr in: {', '.join(stray)}"
