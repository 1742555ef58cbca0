"""Reports: read saved results, write one self-contained HTML page and PNG figures.
Nothing here runs the model."""
