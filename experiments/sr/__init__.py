"""The super-resolution experiment (paper Table 5): configs, SRCNN, image pipeline, task, table."""
