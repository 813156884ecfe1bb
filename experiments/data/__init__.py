"""Datasets for the experiments: IDX and TFDS image loaders, host-side batching."""
