"""Our SBAS inversion against MintPy's on a small network with NaNs and coherence weights.

MintPy (``mintpy.ifgram_inversion.estimate_timeseries``, from PyPI through the ``test`` extra) is
driven as its own ``run_ifgram_inversion_patch`` drives it for pixels with missing pairs: one
call per pixel, NaN pairs dropped by MintPy itself, ``weight_func='coh'`` (``w = gamma`` with
gamma >= 0.05; ours ``weights="coherence"`` clips to [0.05, 0.99], the same for the 0.2-0.95
drawn here). ``benchmarks/sbas.py`` times the same comparison on a large stack.

Tolerance 1e-3 mm, from what the comparison should give. Both solve the same weighted
minimum-norm least-squares problem; the network stays connected with every date in a pair
after the NaNs (MintPy returns zeros for a date without pairs, ours the minimum-norm answer),
so the solution is unique and the two differ only by rounding. MintPy solves in float32
(eps 6e-8): error ~ eps x cond(W^1/2 B) (< 10 here, checked) x |d| (< 25 mm: at most 60 mm/yr
over 0.36 yr, plus noise) ~ 1.5e-5 mm, a few ulps more through the cumulative sum; ours is
float64. 1e-3 mm is that bound with a wide margin (measured 1.3e-5 mm). A wrong weighting, sign or date is orders larger:
the test also checks that the coherence weights move our answer by far more than 1e-3 mm.
"""

from __future__ import annotations

import numpy as np
import pytest

from ncp_subsidence.kernels import sbas as ksbas

ifginv = pytest.importorskip(
    "mintpy.ifgram_inversion", reason="MintPy comes with the test extra: pip install -e '.[test]'"
)
from mintpy.objects import ifgramStack  # noqa: E402
from mintpy.simulation import decorrelation  # noqa: E402

MM_PER_RAD = ksbas.SENTINEL1_WAVELENGTH / (4 * np.pi) * 1000.0
TOLERANCE_MM = 1e-3


def _network(seed: int = 3, n_date: int = 12, n_pixel: int = 40):
    rng = np.random.default_rng(seed)
    dates = np.datetime64("2019-01-01") + np.arange(n_date) * np.timedelta64(12, "D")
    pairs = np.array([(i, i + k) for i in range(n_date) for k in (1, 2, 3) if i + k < n_date])
    t = ksbas.decimal_year_offsets(dates)
    rate = rng.uniform(-60.0, 5.0, n_pixel)
    disp = rate[:, None] * t + rng.normal(0.0, 2.0, (n_pixel, n_date))  # mm, toward satellite
    disp -= disp[:, :1]
    phi = -disp / MM_PER_RAD
    phase = phi[:, pairs[:, 1]] - phi[:, pairs[:, 0]] + rng.normal(0.0, 0.3, (n_pixel, len(pairs)))
    coherence = rng.uniform(0.2, 0.95, phase.shape)
    # NaNs: ~15 % of the pairs of each pixel, never the last pair touching a date
    for p in range(n_pixel):
        for j in rng.permutation(len(pairs))[: len(pairs) // 7]:
            trial = phase[p].copy()
            trial[j] = np.nan
            ok = np.isfinite(trial)
            covered = np.zeros(n_date, bool)
            covered[pairs[ok].ravel()] = True
            if covered.all() and int(ksbas.network_components(pairs[ok], n_date)[1]) == 1:
                phase[p] = trial
    return phase.astype(np.float32), coherence.astype(np.float32), pairs, dates


def _mintpy(phase, coherence, pairs, dates):
    names = [str(d.astype("datetime64[D]")).replace("-", "") for d in dates]
    a, b = ifgramStack.get_design_matrix4timeseries([f"{names[s]}_{names[e]}" for s, e in pairs])[
        :2
    ]
    tbase = np.array([(d - dates[0]) / np.timedelta64(1, "D") for d in dates], np.float32) / 365.25
    w_sqrt = np.sqrt(
        decorrelation.coherence2weight(coherence.T.copy(), "coh", epsilon=5e-2, print_msg=False)
    )
    ts = np.zeros((len(dates), phase.shape[0]), np.float32)
    for k in range(phase.shape[0]):
        ts[:, k] = ifginv.estimate_timeseries(
            A=a,
            B=b,
            y=phase.T[:, k],
            tbase_diff=np.diff(tbase).reshape(-1, 1),
            weight_sqrt=w_sqrt[:, k],
            min_norm_velocity=True,
            print_msg=False,
        )[0].ravel()
    return -ts.T.astype(np.float64) * MM_PER_RAD, b


def test_invert_network_equals_mintpy_with_nans_and_coherence_weights():
    """Mutations this catches: dropping the weights, a NaN pair taken as 0, a sign flip, a
    date-axis shift; each moves the answer by > 0.05 mm against a 1e-3 mm tolerance."""
    phase, coherence, pairs, dates = _network()
    assert np.isnan(phase).any(axis=1).mean() > 0.8  # most pixels miss pairs
    ours = ksbas.invert_network(
        phase, pairs, dates, coherence=coherence, weights="coherence", min_pairs=1
    )
    theirs, b = _mintpy(phase, coherence, pairs, dates)
    assert np.linalg.cond(b * np.sqrt(coherence[0])[:, None]) < 10  # the derivation's bound
    assert np.isfinite(ours.displacement).all()
    diff = float(np.max(np.abs(ours.displacement - theirs)))
    assert diff < TOLERANCE_MM, diff
    # the comparison is not vacuous: the weights matter far beyond the tolerance
    unweighted = ksbas.invert_network(phase, pairs, dates, min_pairs=1)
    assert float(np.max(np.abs(unweighted.displacement - theirs))) > 50 * TOLERANCE_MM
