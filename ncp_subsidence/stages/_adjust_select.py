"""Private to stage ``adjust``: the frames' model selections, as Dask tasks when there is a
cluster (docs/science.md 3.2 step 5; step 4 of the stage's module docstring).

Each frame's selection is planned on the client
(:func:`~ncp_subsidence.models.selection.plan_selection`: the station screen and the CV folds),
its candidates are cross-validated anywhere
(:func:`~ncp_subsidence.models.selection.score_candidate`, a pure function of the plan), and it
is finished on the client (:func:`~ncp_subsidence.models.selection.finish_selection`: the
one-standard-error choice and the refit on every station).

With a distributed client the scoring is one task per frame, candidate and CV repeat for the
costly candidates (GP, SVR, RF, GB; one task per candidate for the others), submitted at a
lower priority than the stage's array computations so the station windows and product writes
of other frames are not held up behind them; a frame is finished as soon as its last task
completes. Without a client (the threaded scheduler of the tests, the Python API) the same
calls run in turn on the client. Either way every number is the one
:func:`~ncp_subsidence.models.selection.select_and_fit` gives: the tasks share nothing and the
parts are put together in repeat order.

A progress line (:mod:`ncp_subsidence.progress`) is logged every interval while selections
run, counted in frames.
"""

from __future__ import annotations

import logging
from typing import Any

from ..models.selection import (
    FittedCorrection,
    SelectionPlan,
    finish_selection,
    score_candidate,
)
from ..progress import Ticker

__all__ = ["SPLIT_BY_REPEAT", "FrameSelections"]

# the stage's logger: messages and their filters are those of stage ``adjust``
log = logging.getLogger("ncp_subsidence.stages.adjust")

SPLIT_BY_REPEAT = frozenset({"GP", "SVR", "RF", "GB"})
"""Candidates whose CV is one task per repeat on a cluster (the polynomials take milliseconds
for all repeats together, less than a task's overhead)."""

_LOWER_PRIORITY = -1
"""Dask priority of the CV tasks (the stage's array computations have 0)."""


def _ready_to_score() -> bool:
    """Imports the model selection (scikit-learn) on a worker and runs the lean paths' checks,
    so the first CV task does not wait for them (~1 s)."""
    from ..models.svr import lean_svr_matches_sklearn
    from ..models.trees import lean_trees_match_sklearn

    return lean_trees_match_sklearn() and lean_svr_matches_sklearn()


def _parts(plan: SelectionPlan, model_id: str) -> list[list[int] | None]:
    """The repeat indices of each task of one candidate (None: every repeat in one task)."""
    if model_id in SPLIT_BY_REPEAT and len(plan.repeats) > 1:
        return [[k] for k in range(len(plan.repeats))]
    return [None]


class FrameSelections:
    """The model selections of a stage run.

    Frames are submitted as their plans are made (on a cluster their CV tasks start at once,
    while the client samples the next frame), and :meth:`result` waits for one frame only, so
    the stage writes a frame while the cluster still cross-validates the later ones (the
    writes' tasks come first: the CV tasks have a lower priority).

    Parameters
    ----------
    client : distributed.Client or None
        None: each frame's CV runs on the client when :meth:`result` asks for it (in turn).
    lean : bool, see :func:`~ncp_subsidence.models.selection.select_and_fit`
    """

    def __init__(self, client: Any, *, lean: bool = True) -> None:
        self.client = client
        self.lean = lean
        self.plans: dict[str, SelectionPlan | None] = {}
        self._done: dict[str, FittedCorrection | None] = {}
        self._owner: dict[Any, tuple[str, str]] = {}
        self._pending: dict[str, int] = {}
        self._scores: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self._completed: Any = None  # distributed.as_completed over every CV task
        self._ticker: Ticker | None = None
        self._closed = False
        self._warm: list[Any] = []
        if client is not None:  # a warm-up task per worker, at the CV's priority: it fills the
            # workers' idle moments while the client builds graphs, and holds up no array task
            workers = list(client.scheduler_info().get("workers", {}))
            self._warm = [
                client.submit(
                    _ready_to_score,
                    pure=False,
                    workers=[w],
                    allow_other_workers=True,
                    priority=_LOWER_PRIORITY,
                )
                for w in workers
            ]

    def submit(self, frame: str, plan: SelectionPlan | None) -> None:
        """Add a frame (``plan`` None: no usable station, no fit); on a cluster its CV tasks are
        submitted now."""
        self.plans[frame] = plan
        if plan is None:
            return
        self._scores[frame] = {m: [] for m in plan.to_score}
        if self.client is None or not plan.to_score:
            return
        # the plan travels with each task (tens of kB): no scatter, which waits for workers
        # (an adaptive cluster at zero workers scales up on queued tasks, not on scatters)
        for m in plan.to_score:
            for repeats in _parts(plan, m):
                future = self.client.submit(
                    score_candidate,
                    plan,
                    m,
                    repeats=repeats,
                    lean=self.lean,
                    pure=False,
                    priority=_LOWER_PRIORITY,
                )
                self._owner[future] = (frame, m)
                self._pending[frame] = self._pending.get(frame, 0) + 1
                if self._completed is not None:
                    self._completed.add(future)

    def result(self, frame: str) -> FittedCorrection | None:
        """The frame's fitted correction (None where its plan is None), once its selection is
        done; frames whose CV completes meanwhile are finished too. A progress line (in frames)
        is logged every interval while the cluster's tasks complete."""
        if self._ticker is None:
            self._ticker = Ticker(
                "adjust: model selection", total=len(self.plans), logger=log, unit="frames"
            )
        try:
            if frame not in self._done:
                if self._pending.get(frame):
                    self._collect_until(frame)
                else:
                    self._finish_here(frame)
        except BaseException:
            self.cancel()
            raise
        if len(self._done) == len(self.plans) and not self._closed:
            self._closed = True
            self._ticker.close()
        return self._done[frame]

    def cancel(self) -> None:
        """Drop every CV task not yet collected (after a failure)."""
        if self._owner and self.client is not None:
            self.client.cancel(list(self._owner))
        self._owner.clear()

    def _finish(self, frame: str, fitted: FittedCorrection | None) -> None:
        self._done[frame] = fitted
        assert self._ticker is not None
        self._ticker()

    def _finish_here(self, frame: str) -> None:
        """A frame without CV tasks: no plan, 1-2 stations, or no cluster (CV on the client)."""
        plan = self.plans[frame]
        if plan is None:
            self._finish(frame, None)
            return
        scores = self._scores[frame]
        for m in plan.to_score:
            scores[m] = [score_candidate(plan, m, lean=self.lean)]
        self._finish(frame, finish_selection(plan, scores))

    def _collect_until(self, frame: str) -> None:
        """Take the cluster's CV results as they complete until ``frame`` is finished."""
        if self._completed is None:
            from distributed import as_completed

            log.debug("adjust: %d CV task(s) for %d frame(s)", len(self._owner), len(self.plans))
            self._completed = as_completed(list(self._owner))
        assert self._ticker is not None
        while frame not in self._done:
            future = next(self._completed)
            owner, m = self._owner.pop(future)
            self._scores[owner][m].append(future.result())
            self._pending[owner] -= 1
            self._ticker(0)  # a progress line if the interval has passed
            if self._pending[owner] == 0:
                plan = self.plans[owner]
                assert plan is not None
                self._finish(owner, finish_selection(plan, self._scores[owner]))
