"""Pipeline stages, one module per stage, in pipeline order: xarray in, xarray out, graph building only."""
