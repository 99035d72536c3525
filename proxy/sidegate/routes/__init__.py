"""HTTP routes, one module per endpoint family; each is a thin adapter over the pipeline."""
