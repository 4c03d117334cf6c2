"""Plain interferogram COGs (``ncp:format`` ``"cog"``): the NCP twin's products.

What the adapter knows (see :mod:`ncp_subsidence.synthetic` for the twin that writes them):

* ``unw_phase``: float32 unwrapped phase in radians, secondary minus reference, no data tagged
  in the file (NaN); ``corr``: float32 coherence 0-1, no data tagged.
* frame geometry as HyP3 (GAMMA) look-vector maps, one pair per frame or per pair: assets
  ``lv_theta`` (elevation of the ground-to-satellite look vector above the horizontal, radians,
  ``incidence = 90 deg - lv_theta``) and ``lv_phi`` (its horizontal orientation from east,
  anticlockwise, radians); no data tagged in the file.

Items without ``ncp:format`` are read with this adapter.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .hyp3 import look_layers

__all__ = ["ADAPTER", "CogAdapter"]


class CogAdapter:
    """Reading conventions of plain COG interferograms (:class:`~.IfgAdapter`)."""

    name = "cog"
    phase_asset = "unw_phase"
    coherence_asset = "corr"
    #: geometry assets: look-vector elevation and orientation, radians
    theta_asset = "lv_theta"
    phi_asset = "lv_phi"

    def canonical_block(self, phase: Any, coherence: Any) -> tuple[Any, Any]:
        """Already canonical: phase in radians, coherence 0-1, file no data NaN.

        Parameters
        ----------
        phase, coherence : ndarray, shape (pair, y, x), float32
            Raw blocks with the file's no data already NaN.

        Returns
        -------
        phase : ndarray, shape (pair, y, x), float32, radians
        coherence : ndarray, shape (pair, y, x), float32, 0-1
        """
        return (
            np.asarray(phase, dtype=np.float32),
            np.asarray(coherence, dtype=np.float32),
        )

    def geometry(self, items: list[Any], grid: Any) -> dict[str, Any] | None:
        """Incidence and LOS unit vector on ``grid`` from the items' ``lv_theta``/``lv_phi``.

        Each distinct pair of geometry files is placed on the frame grid (windowed copy on the
        grid's lattice, bilinear otherwise); where several cover a pixel the first item's wins.

        Parameters
        ----------
        items : list of pystac.Item
            The frame's interferogram items.
        grid : Grid
            The frame grid (:class:`~ncp_subsidence.io.readers.Grid`).

        Returns
        -------
        dict or None
            ``incidence`` (degrees from the vertical) and ``los_east``, ``los_north``,
            ``los_up`` (ground-to-satellite unit vector), each ``(y, x)`` float32 with NaN
            where no geometry file covers the pixel; None when no item has both assets.

        Raises
        ------
        DataError
            A geometry file that cannot be read, or incidence outside [20, 50] deg.
        """
        from ..readers import read_raster_on_grid

        pairs: list[tuple[str, str]] = []
        for item in items:
            if self.theta_asset in item.assets and self.phi_asset in item.assets:
                hrefs = tuple(
                    item.assets[k].get_absolute_href() or item.assets[k].href
                    for k in (self.theta_asset, self.phi_asset)
                )
                if hrefs not in pairs:
                    pairs.append(hrefs)  # type: ignore[arg-type]
        if not pairs:
            return None
        theta = np.full(grid.shape, np.nan, dtype=np.float32)
        phi = np.full(grid.shape, np.nan, dtype=np.float32)
        for theta_href, phi_href in pairs:
            gap = np.isnan(theta)
            if not gap.any():
                break
            t = read_raster_on_grid(theta_href, grid)
            p = read_raster_on_grid(phi_href, grid)
            theta = np.where(gap, t, theta)
            phi = np.where(gap, p, phi)
        return look_layers(theta, phi)

    def attrs(self) -> dict[str, str]:
        """Provider, units and sign conventions recorded on the ingested frame."""
        return {
            "provider": "plain COGs (NCP twin conventions)",
            "ifg_format": "cog",
            "unw_phase_units": "radians",
            "coherence_units": "1",
            "phase_sign_convention": "secondary minus reference; d_los = -wavelength / (4 pi) * "
            "phase, positive toward the satellite",
            "los_convention": "unit vector ground to satellite (east, north, up), from lv_theta / "
            "lv_phi (radians)",
            "nodata": "tagged in the files (NaN)",
        }


#: The adapter :func:`~ncp_subsidence.io.products.ifg_adapter` returns for ``"cog"``.
ADAPTER = CogAdapter()
