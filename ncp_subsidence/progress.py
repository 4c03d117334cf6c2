"""Progress lines for long client-side loops and long Dask computes.

A terminal gets Dask's progress bar (the CLI's compute hook); everywhere else (a log file, a CI
job, a Kubernetes pod) a progress bar is useless, so long steps write one log line every
``interval`` seconds instead::

    with steps("adjust: cross-validation", total=n_frames, logger=log, unit="frames") as tick:
        for frame in frames:
            ...
            tick()

writes ``adjust: cross-validation 3/8 frames (38%), 31 s`` at most once per interval and a
closing ``... 8/8 frames, done in 74 s`` when any line was written. The interval is
:func:`interval` (``NCP_SUBSIDENCE_PROGRESS_INTERVAL`` seconds, default 15).

Dask computes get the same treatment from :func:`logged_compute`, a compute hook that logs how
many of the graph's tasks are done (``stage 3/10 sbas: 412/1,230 tasks (33%), 45 s``), labelled
with the stage that :func:`labelled` names.

This module only emits records on the logger it is given; the CLI alone configures handlers.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

__all__ = [
    "Ticker",
    "current_label",
    "interval",
    "labelled",
    "logged_compute",
    "readable",
    "steps",
]

_LABEL: contextvars.ContextVar[str] = contextvars.ContextVar("ncp_progress_label", default="")

_ENV = "NCP_SUBSIDENCE_PROGRESS_INTERVAL"
_DEFAULT = 15.0


def readable(value: Any, digits: int = 4) -> str:
    """A value as a log line shows it: floats to ``digits`` significant digits, integers with
    thousands separators, mappings as ``key=value, ...`` and sequences comma-joined (no Python
    reprs with 16 digits and braces)::

        >>> readable({"rms": 2.0421498514936465, "n": 12345, "ok": True})
        'rms=2.042, n=12,345, ok=True'
    """
    import numpy as np

    if isinstance(value, bool | np.bool_ | str) or value is None:
        return str(value)
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        v = float(value)
        if not np.isfinite(v):
            return str(v)
        return f"{v:,.0f}" if abs(v) >= 10 ** (digits - 1) else f"{v:.{digits}g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={readable(v, digits)}" for k, v in value.items())
    if isinstance(value, list | tuple | np.ndarray):
        return ", ".join(readable(v, digits) for v in value)
    return str(value)


def interval() -> float:
    """Seconds between progress lines: ``$NCP_SUBSIDENCE_PROGRESS_INTERVAL`` or 15."""
    raw = os.environ.get(_ENV)
    if raw is None:
        return _DEFAULT
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(
            f"{_ENV}={raw!r} is not a number of seconds; set it to e.g. 15, or unset it"
        ) from None
    if not value > 0:
        raise ValueError(f"{_ENV}={raw!r} must be a positive number of seconds (e.g. 15)")
    return value


class Ticker:
    """Counts finished units of a loop and logs a line when ``interval`` seconds have passed.

    Parameters
    ----------
    label : str
        What is progressing (``"geodetector: sensitivity draws"``).
    total : int
        Units expected (0 or negative: unknown, the line shows only the count).
    logger : logging.Logger
        Where the lines go (at INFO).
    unit : str
        The unit's name in the line (``"frames"``, ``"draws"``).
    every : float, optional
        Seconds between lines; default :func:`interval`.
    """

    def __init__(
        self,
        label: str,
        total: int,
        logger: logging.Logger,
        unit: str = "steps",
        every: float | None = None,
    ) -> None:
        self.label = label
        self.total = int(total)
        self.logger = logger
        self.unit = unit
        self.every = interval() if every is None else float(every)
        self.done = 0
        self.lines = 0
        self._start = time.perf_counter()
        self._last = self._start

    @property
    def elapsed(self) -> float:
        """Seconds since the ticker was made."""
        return time.perf_counter() - self._start

    def _count(self) -> str:
        if self.total > 0:
            return f"{self.done:,}/{self.total:,} {self.unit} ({100 * self.done / self.total:.0f}%)"
        return f"{self.done:,} {self.unit}"

    def __call__(self, n: int = 1) -> None:
        """``n`` more units finished; logs a line if the interval has passed since the last."""
        self.done += n
        now = time.perf_counter()
        if now - self._last >= self.every:
            self._last = now
            self.lines += 1
            self.logger.info("%s %s, %.0f s", self.label, self._count(), now - self._start)

    def close(self) -> None:
        """Logs the closing line if any progress line was written."""
        if self.lines:
            self.logger.info("%s %s, done in %.0f s", self.label, self._count(), self.elapsed)

    def __enter__(self) -> Ticker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()


def steps(
    label: str,
    total: int,
    logger: logging.Logger,
    unit: str = "steps",
    every: float | None = None,
) -> Ticker:
    """A :class:`Ticker` for a ``with`` block (the closing line is written on a clean exit)."""
    return Ticker(label, total, logger, unit=unit, every=every)


@contextlib.contextmanager
def labelled(label: str) -> Iterator[None]:
    """Names what is running (``"stage 3/10 sbas"``) for the progress lines of its computes."""
    token = _LABEL.set(label)
    try:
        yield
    finally:
        _LABEL.reset(token)


def current_label() -> str:
    """The label set by the innermost :func:`labelled` block (``"computing"`` outside one)."""
    return _LABEL.get() or "computing"


def logged_compute(
    client: Any, logger: logging.Logger, every: float | None = None
) -> Callable[[Any], None]:
    """A compute hook (``run_pipeline(compute=...)``) that logs task progress off a terminal.

    Each call computes a delayed object on ``client`` and, until it finishes, logs the count of
    its finished tasks every ``every`` seconds (default :func:`interval`) as
    ``<label>: done/all tasks (p%), t s``, where the label is :func:`current_label`. The counts
    come from the scheduler's own progress plugin, the one behind ``distributed.progress``.
    """
    from distributed import wait
    from distributed.diagnostics.progressbar import TextProgressBar

    seconds = interval() if every is None else float(every)

    class _LogBar(TextProgressBar):  # draws a log line, not a terminal bar
        def __init__(self, keys: Any, label: str) -> None:
            self._label = label
            self._last = time.perf_counter()
            super().__init__(keys, scheduler=client.scheduler.address, interval="500ms")

        def _draw_bar(self, remaining: int, all: int, **kwargs: Any) -> None:
            now = time.perf_counter()
            if now - self._last < seconds or not all:
                return
            self._last = now
            done = all - remaining
            logger.info(
                "%s: %s/%s tasks (%.0f%%), %.0f s",
                self._label,
                f"{done:,}",
                f"{all:,}",
                100 * done / all,
                self.elapsed,
            )

        def _draw_stop(self, **kwargs: Any) -> None:
            pass

    def compute(delayed: Any) -> None:
        future = client.compute(delayed)
        _LogBar([future], current_label())  # returns when the graph finished or failed
        wait(future)
        future.result()

    return compute
