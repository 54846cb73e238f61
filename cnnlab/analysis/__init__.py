"""cnnlab.analysis."""
