"""The implementation of divnorm (private: import from `divnorm`, `divnorm.linen`, `divnorm.nnx`)."""
