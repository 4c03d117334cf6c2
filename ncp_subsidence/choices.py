"""The project's vocabulary: the choices of each option, defined once.

A dependency-free module (no numpy, no pydantic): the config's ``Literal`` types, the stages and
the kernels' registries all take their names from here, so a new choice is added in one place
and a test checks that the registries and the config agree.
"""

from __future__ import annotations

__all__ = ["FACTOR_NAMES"]

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
