"""cnnlab.train."""
