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

This module only emits records on the logger it is given; the CLI alone configures handlers.
"""

from __future__ import annotations

import logging
import os
import time
from types import TracebackType

__all__ = ["Ticker", "interval", "steps"]

_ENV = "NCP_SUBSIDENCE_PROGRESS_INTERVAL"
_DEFAULT = 15.0


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
