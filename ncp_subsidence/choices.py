"""The project's vocabulary: the choices of each option, defined once.

A dependency-free module (no numpy, no pydantic): the config's ``Literal`` types, the stages and
the kernels' registries all take their names from here, so a new choice is added in one place
and a test checks that the registries and the config agree.
"""

from __future__ import annotations

__all__ = ["DISCRETIZATIONS", "FACTOR_NAMES", "SBAS_WEIGHTS"]

#: Driving factors in Huang et al. (2025) Table 1 order (GWSA trend first).
FACTOR_NAMES: tuple[str, ...] = (
    "gwsa_trend",
    "dem",
    "precipitation",
    "evapotranspiration",
    "ndvi",
    "fault_density",
    "building_density",
    "population",
    "gdp",
)

#: Interferogram weightings of the SBAS inversion (``sbas.weights``): unit weights (Berardino),
#: clipped coherence, or Fisher information ``2 L g^2 / (1 - g^2)`` (docs/science.md 1.2). Each has
#: its entry in ``kernels.sbas.WEIGHTINGS``.
SBAS_WEIGHTS: tuple[str, ...] = ("none", "coherence", "fisher")

#: Discretizations of a continuous factor into strata (``geodetector.discretization``; docs/science.md
#: 7.3): Fisher-Jenks natural breaks, quantiles, equal intervals, geometric progression, standard
#: deviation classes, and the OPGD search over those five and k = 3..20 (``optimal``). Each has
#: its entry in ``kernels.discretize.DISCRETIZERS``.
DISCRETIZATIONS: tuple[str, ...] = (
    "natural_breaks",
    "quantile",
    "equal_interval",
    "geometric",
    "std",
    "optimal",
)
