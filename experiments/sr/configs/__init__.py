"""SR configs: each file defines `get_config(arg: str) -> ml_collections.ConfigDict`."""
