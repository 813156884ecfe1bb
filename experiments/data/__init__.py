"""Data readers shared by the experiments: IDX files, image datasets, host-side batching."""
