"""Experiments built on divnorm: configs, models, data, the training engine.

divnorm never imports this package.
"""
