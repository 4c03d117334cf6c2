"""Stage ``mosaic``: overlap adjustment across frames and feathered blending (docs/science.md 4).

Reads ``adjust/<frame>`` (Eurasia-fixed, GNSS-adjusted LOS products with ``vertical_velocity``),
the frame geometry ``ingest/ifg/<frame>`` (``los_up``) and ``ingest/gnss``. Graph building only;
the numbers live in :mod:`ncp_subsidence.kernels.adjust`.

1. **Overlap samples** (docs/science.md 4.3 step 2): every pair of frames whose grids intersect is
   sampled on a regular grid of ``mosaic.overlap_spacing_km`` cells over the intersection; a
   cell's value is the median of the frame's vertical-velocity pixels in it with temporal
   coherence >= ``mosaic.min_coherence`` (only the overlap strips are computed). Where one
   frame is on a projected grid, both are compared at the same points: the other frame's pixel
   centres, where the projected one is sampled bilinearly (medians of two pixel sets that do
   not coincide differ wherever the velocity has a gradient).
2. **GNSS ties**: the training stations of each frame (never the held-out ones recorded by
   ``adjust``), vertical velocity in the same Eurasia-fixed frame as ``adjust`` used.
3. **Sparse least squares** (:func:`~ncp_subsidence.kernels.adjust.adjust_overlaps`): per frame
   adjusted in Stage 3 ``mosaic.adjusted_frame_model``, by default a cubic spline of the north
   coordinate ``k_f(y)`` (knots every ``mosaic.along_track_knot_km``, roughness penalty
   ``mosaic.along_track_roughness``; constant across track) that follows what the frame's GNSS
   fit left along its overlaps, or docs/science.md 4.3's offset ``k_f = a_f``, or a plane; a plane
   ``a_f + b_f x + c_f y`` per frame without GNSS (flagged by ``adjust``); GNSS ties weighted
   ``mosaic.gnss_weight``, damping ``mosaic.damping``.
4. **Blending** onto the output grid (``mosaic.resolution_deg`` over the union of the frames,
   cell-registered, ``lat`` descending): per output block a task bilinearly resamples each
   frame's window, adds ``k_f`` and blends with ``W_f = feather_f / sigma_f^2``
   (:func:`~ncp_subsidence.kernels.adjust.blend_frames`); the feather (distance to the frame
   edge, capped at ``mosaic.feather_km``) is computed on each frame's own grid with
   ``map_overlap``. ``sigma_f = sqrt(velocity_std^2 + CV_rmse^2) / u_up``.
   A frame on a projected grid (HyP3's UTM zones, ``x``/``y`` in metres; ``adjust`` keeps each
   frame's CRS) is resampled the same way, onto the EPSG:4326 product grid: the block's cell
   centres are transformed to the frame's x/y (pyproj) and interpolated bilinearly on the
   frame's regular grid (:func:`~ncp_subsidence.kernels.adjust.bilinear_sample`), inside the
   block's task, so memory stays bounded by the block. Its lon/lat box (the transformed outline
   of its grid, snapped out to the product cells) sets the product grid and the overlap boxes;
   overlap cells are lon/lat cells holding the pixels whose centres fall in them.
5. **Time series**: each frame's vertical displacement ``d / u_up`` is resampled to the mid-month
   epochs common to every frame (:func:`~ncp_subsidence.kernels.adjust.resample_to_epochs`),
   corrected by ``k_f (t - t_0)``, re-zeroed at the first common month and blended with the
   velocity weights.

Dataset written (``mosaic/<version>``, dims ``time, lat, lon``): ``vertical_velocity`` (mm/yr),
``velocity_std`` (mm/yr), ``n_frames`` (int16), ``vertical_displacement`` (mm, relative to the
first common month). Attrs: ``frames``, ``frame_corrections`` (JSON: per frame model, plane
parameters and, for ``along_track``, the spline's knots and coefficients), ``overlap_edges`` (JSON: per edge n, rms before/after in mm/yr),
``overlap_rms_before``/``overlap_rms_after`` (max over the used edges), ``plate_model``,
``euler_vector_mas_per_yr``, ``reference_month``, ``n_gnss_ties``, ``unconstrained_components``.

References
----------
Mi, J., Wu, Z., Wang, X., Bai, L., Li, Z., Lu, Z. (2026). Mapping wide-area land subsidence from
groundwater use in the North China plain by machine learning-based InSAR adjustment. Remote Sens.
Environ. doi:10.1016/j.rse.2025.115226.
Paige, C. C., Saunders, M. A. (1982). LSQR. ACM TOMS 8(1), 43-71.
"""

from __future__ import annotations

import logging

from ..errors import DataError
from ..kernels.adjust import adjust_overlaps, bilinear_regrid
from ..kernels.trends import decimal_year
from ..pipeline import Stage, StageContext
from ..progress import readable
from ._mosaic_blend import blend, common_months, mosaic_attrs
from ._mosaic_frames import frame_extents_km, gnss_ties, open_frame, product_grid
from ._mosaic_overlaps import overlap_samples

__all__ = ["STAGE", "MosaicStage", "bilinear_regrid", "common_months"]

log = logging.getLogger(__name__)


class MosaicStage(Stage):
    """Overlap adjustment and feathered blending onto one grid (see the module docstring)."""

    name = "mosaic"
    reads: tuple[str, ...] = ("adjust", "ingest")

    def run(self, ctx: StageContext) -> None:
        opts = ctx.options
        names = sorted(d for d in ctx.upstream_datasets("adjust") if d != ".")
        if not names:
            raise DataError("the adjust product has no frame datasets; run stage 'adjust' first")
        frames = [open_frame(ctx, f) for f in names]
        lat, lon, origin = product_grid(frames, opts.resolution_deg)
        overlaps = overlap_samples(frames, opts, origin)
        ties = gnss_ties(ctx, frames, opts, origin)
        result = adjust_overlaps(
            len(frames),
            overlaps,
            ties,
            models=[opts.adjusted_frame_model if f["fitted"] else "plane" for f in frames],
            lambda_gnss=opts.gnss_weight,
            damping=opts.damping,
            min_samples=opts.min_overlap_samples,
            extents_km=frame_extents_km(frames, origin),
            knot_spacing_km=opts.along_track_knot_km,
            roughness=opts.along_track_roughness,
        )
        months = common_months([f["time"][0] for f in frames], [f["time"][-1] for f in frames])
        ds = blend(frames, result, lat, lon, months, decimal_year(months), origin, opts)
        ds.attrs.update(mosaic_attrs(names, frames, result, ties, origin, months))
        log.info(
            "mosaic: %d frames, corrections %s, overlap RMS %s -> %s mm/yr",
            len(frames),
            readable(result.models),
            readable(ds.attrs["overlap_rms_before"]),
            readable(ds.attrs["overlap_rms_after"]),
        )
        ctx.write(None, ds, region_dim="lat")


STAGE = MosaicStage()
