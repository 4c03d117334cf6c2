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


def test_every_processing_option_takes_its_choices_from_the_vocabulary():
    """Each ``Literal`` option of the processing sections is one tuple of ``choices``."""
    from ncp_subsidence import choices, config
    from ncp_subsidence.models.selection import MODEL_ORDER

    vocabulary = {getattr(choices, n) for n in choices.__all__}
    sections = (
        config.SourceOptions, config.IngestOptions, config.SBASOptions, config.AdjustOptions,
        config.MosaicOptions, config.HydroOptions, config.FactorsOptions,
        config.GeodetectorOptions, config.AnalysisOptions,
    )  # fmt: skip
    for section in sections:
        for name, field in section.model_fields.items():
            annotation = field.annotation
            if typing.get_origin(annotation) is list:
                (annotation,) = typing.get_args(annotation)
            if typing.get_origin(annotation) is typing.Literal:
                assert typing.get_args(annotation) in vocabulary, (section.__name__, name)
    assert set(MODEL_ORDER) == set(choices.CORRECTION_MODELS)
