"""cnnlab.serve."""
