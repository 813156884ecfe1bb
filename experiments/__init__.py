"""The paper's experiments on divnorm: one folder each (cnn/, rnn/, sr/) beside the shared
training engine (engine/), data readers (data/) and config helpers (config.py).

divnorm never imports this package.
"""
