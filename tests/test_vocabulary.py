"""One vocabulary: the config's choices of each option and the kernels' registries agree."""

from __future__ import annotations

import typing

import pytest

from ncp_subsidence.choices import DISCRETIZATIONS, SBAS_WEIGHTS
from ncp_subsidence.config import GeodetectorOptions, SBASOptions
from ncp_subsidence.errors import ConfigError
from ncp_subsidence.kernels.discretize import DISCRETIZERS
from ncp_subsidence.kernels.sbas import WEIGHTINGS, weighting


def test_discretization_choices_match_the_kernel_registry():
    config_choices = typing.get_args(GeodetectorOptions.model_fields["discretization"].annotation)
    assert config_choices == DISCRETIZATIONS
    assert tuple(DISCRETIZERS) == DISCRETIZATIONS
    assert all(d.name == name for name, d in DISCRETIZERS.items())


def test_sbas_weight_choices_match_the_kernel_registry():
    config_choices = typing.get_args(SBASOptions.model_fields["weights"].annotation)
    assert config_choices == SBAS_WEIGHTS
    assert tuple(WEIGHTINGS) == SBAS_WEIGHTS
    assert all(w.name == name for name, w in WEIGHTINGS.items())
    with pytest.raises(ConfigError, match="not known"):
        weighting("nope", has_coherence=True)
