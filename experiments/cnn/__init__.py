"""The CNN experiment (paper Tables 3/7): configs, model, task, the comparison, table and sweep."""
