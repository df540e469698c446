"""Automatic policies: pure decisions (stop, replace) from the metrics runs record at chunk boundaries."""
