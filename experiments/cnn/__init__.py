"""Commands around the CNN experiment: the comparison demo, the paper table, the batch sweep."""
