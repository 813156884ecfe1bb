"""The RNN language-model experiment (paper Tables 4/9): configs, cells, corpora, task, table."""
