"""Log records of a task on a worker, carried back: :mod:`ncp_subsidence.logcapture`."""

from __future__ import annotations

import logging
import pickle
import threading

from ncp_subsidence.logcapture import captured_records, emit_records


def test_only_this_threads_records_at_the_level_are_kept_and_the_logger_is_restored():
    logger = logging.getLogger("ncp_subsidence")
    child = logging.getLogger("ncp_subsidence.io.example")
    before = (logger.level, list(logger.handlers))
    logger.setLevel(logging.WARNING)  # a worker's usual state: INFO records are never made
    try:
        with captured_records(logging.INFO) as records:
            child.debug("below the level")
            child.info("kept %d of %s", 3, "files")
            other = threading.Thread(target=child.warning, args=("another thread",))
            other.start()
            other.join()
            try:
                raise ValueError("bad value 7")
            except ValueError:
                child.exception("failed")
            logging.getLogger("elsewhere").warning("not the package's")
        assert [r.getMessage() for r in records] == ["kept 3 of files", "failed"]
        assert records[0].args is None and records[0].name == "ncp_subsidence.io.example"
        assert records[1].exc_info is None and "ValueError: bad value 7" in records[1].exc_text
        assert logger.level == logging.WARNING
        assert logger.handlers == before[1]
        child.info("after the block")  # nothing captured any more
        assert len(records) == 2
    finally:
        logger.setLevel(before[0])


def test_captured_records_travel_and_reach_the_drivers_handlers(caplog):
    with captured_records(logging.INFO) as records:
        logging.getLogger("ncp_subsidence.stages.example").info("read %d months", 252)
    travelled = pickle.loads(pickle.dumps(records))
    caplog.clear()  # the record also propagated here when it was made (one process in a test)
    with caplog.at_level(logging.INFO, logger="ncp_subsidence"):
        emit_records(travelled)
    (record,) = [r for r in caplog.records if r.name == "ncp_subsidence.stages.example"]
    assert record.getMessage() == "read 252 months"
    assert record.created == records[0].created  # the time it was logged, not re-emitted
