"""The package's log records of one task on a worker, carried back to the driver.

A task that runs stage code on a worker (the ingest's table reads) logs there, where nobody
reads the worker's stderr. :func:`captured_records` keeps the records of the ``ncp_subsidence``
loggers that the task's own thread emits, at the driver's level, made picklable (the message
formatted, a traceback as text); the task returns them with its result and the driver hands each
to its logger (``logging.getLogger(record.name).handle(record)``), so they reach the handlers
the CLI configured, with the worker's process name and time.

This is the one place besides ``cli.py`` that touches a logger's handlers or level: it adds a
handler for the length of the block and lowers the ``ncp_subsidence`` logger's level to the
driver's when the worker's is higher, then restores both. It configures nothing a user sees.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["captured_records"]


class _Captured(logging.Handler):
    """Keeps the records of one thread, made picklable (message formatted, traceback as text)."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.thread = threading.get_ident()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        kept = logging.makeLogRecord(record.__dict__)
        kept.msg, kept.args = record.getMessage(), None
        if record.exc_info:
            kept.exc_text = logging.Formatter().formatException(record.exc_info)
        kept.exc_info = None
        self.records.append(kept)


@contextmanager
def captured_records(level: int) -> Iterator[list[logging.LogRecord]]:
    """The package's log records of this thread at ``level`` and above, while in the block."""
    logger = logging.getLogger("ncp_subsidence")
    handler, before = _Captured(), logger.level
    handler.setLevel(level)
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)


def emit_records(records: list[logging.LogRecord]) -> None:
    """Hand captured records, in order, to the loggers of their names (here: the driver's)."""
    for record in records:
        logging.getLogger(record.name).handle(record)
