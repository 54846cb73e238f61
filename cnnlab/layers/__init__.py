"""cnnlab.layers."""
