"""A shrunk `rnn_lm` schedule that a shared 2-core CPU finishes: the committed results.

Same model family, cells, placements, hyperparameters and optimizer as
`rnn_lm` (the paper's), except: hidden size 128 (paper 200), a 5k-word
vocabulary (paper 10k), 2 epochs (paper 13) with the lr halved every epoch
from epoch 2 (paper: from epoch 5). `get_config("CELL,VARIANT[,DATASET]")`.
"""

from __future__ import annotations

import ml_collections

from experiments.rnn.configs import rnn_lm


def get_config(arg: str = "lstm,baseline") -> ml_collections.ConfigDict:
  cfg = rnn_lm.get_config(arg)
  cfg.name = cfg.name.replace("rnn_lm/", "rnn_lm_quick/")
  cfg.model.hidden_size = 128
  cfg.data.vocab_size = 5000
  cfg.num_epochs = 2
  cfg.decay_from_epoch = 2
  cfg.log_every = 50
  return cfg
