"""Where the report's charts are drawn: in this process, or in a helper process started early.

A tear sheet costs two things a backtest does not otherwise pay: importing matplotlib (~0.45 s
on the project's machine) and drawing its figures (~0.4 s for W4). Both are pure CPU work in
Python, so a thread would only take turns with the backtest for the interpreter lock. A second
process takes a second core instead: `ChartProcess` spawns one when the command starts, which
imports matplotlib while the backtest loads and runs, then draws the figures while the result
tables are written (`report.html.start_report` submits the charts before the tables are
rendered). With two cores the report then adds the drawing that is left over, not the import
(benchmarks/bench_report.py measures it). Figures are pure functions of their numbers, so
either place draws the same bytes.

`InProcess` draws at once (a notebook's `result.report()`, a one-core machine, the Dagster
assets, which already run in their own processes).
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import Any, Protocol

Chart = Callable[..., bytes]


class Drawn(Protocol):
    def result(self) -> bytes:
        """The chart's PNG bytes (waits for them)."""
        ...


class Drawing(Protocol):
    def submit(self, chart: Chart, /, *args: Any, **kwargs: Any) -> Drawn:
        """Draw `chart(*args, **kwargs)`."""
        ...


class InProcess:
    """Draws each chart when it is submitted, in this process (a context manager like
    `ChartProcess`, with nothing to stop)."""

    def submit(self, chart: Chart, /, *args: Any, **kwargs: Any) -> Drawn:
        done: Future[bytes] = Future()
        done.set_result(chart(*args, **kwargs))
        return done

    def __enter__(self) -> InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class ChartProcess:
    """One spawned helper process that imports matplotlib at once, then draws the charts sent
    to it, in order, over a pipe. Use as a context manager: leaving it stops the process at
    once (a run that failed does not wait for matplotlib to finish importing). Should the
    helper not start or die, the charts it did not draw are drawn here: it only saves time.

    Spawning runs the caller's main module again in the helper (Python's rule for `spawn`):
    the CLI's entry point guards it; a script must keep its work under
    `if __name__ == "__main__":`."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")  # a fork would copy the caller's threads
        self._conn, theirs = context.Pipe()
        self._process = context.Process(target=_serve, args=(theirs,), daemon=True)
        self._process.start()
        theirs.close()
        self._waiting: deque[_Pending] = deque()
        self._broken = False

    def submit(self, chart: Chart, /, *args: Any, **kwargs: Any) -> Drawn:
        pending = _Pending(self, chart, args, kwargs)
        if self._broken:
            pending.draw_here()
            return pending
        try:
            self._conn.send((chart, args, kwargs))
        except OSError:  # the helper is gone (it could not start here): draw in this process
            self._broken = True
            pending.draw_here()
            return pending
        self._waiting.append(pending)
        return pending

    def _receive(self, wanted: _Pending) -> None:
        """Read answers in order until `wanted` has its own; should the helper die, what it
        did not answer is drawn here."""
        while not wanted.ready:
            head = self._waiting.popleft()
            try:
                ok, value = self._conn.recv()
            except (EOFError, OSError):
                self._broken = True
                head.draw_here()
                continue
            head.settle(ok, value)

    def close(self) -> None:
        self._conn.close()
        self._process.terminate()
        self._process.join()

    def __enter__(self) -> ChartProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Pending:
    """A chart sent to a `ChartProcess`: its bytes once the answers before it are read."""

    def __init__(self, owner: ChartProcess, chart: Chart, args: Any, kwargs: Any) -> None:
        self._owner = owner
        self._job = (chart, args, kwargs)
        self.ready = False
        self._ok = False
        self._value: Any = None

    def settle(self, ok: bool, value: Any) -> None:
        self.ready, self._ok, self._value = True, ok, value

    def draw_here(self) -> None:
        chart, args, kwargs = self._job
        self.settle(True, chart(*args, **kwargs))

    def result(self) -> bytes:
        self._owner._receive(self)
        if not self._ok:
            msg = f"drawing a chart failed in the chart process: {self._value}"
            raise RuntimeError(msg)
        data: bytes = self._value
        return data


def for_this_machine() -> ChartProcess | InProcess:
    """A helper process where there is a second core to run it on, else this process."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return ChartProcess() if (cores or 1) > 1 else InProcess()


def _serve(conn: Connection) -> None:
    """The helper process: import matplotlib, then draw each chart sent until the pipe closes."""
    from ml4t_pipeline.report import charts

    charts.warm_up()
    while True:
        try:
            chart, args, kwargs = conn.recv()
        except EOFError:
            return
        try:
            conn.send((True, chart(*args, **kwargs)))
        except Exception as exc:  # the caller raises it, with the chart process named
            conn.send((False, f"{type(exc).__name__}: {exc}"))
