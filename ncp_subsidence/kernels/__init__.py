"""Pure numpy/scipy kernels: plain arrays in and out, core dimensions last.

No dask, no xarray, no I/O here; wrappers in ``ncp_subsidence.stages`` map these over chunks.
"""
