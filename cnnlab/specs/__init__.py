"""cnnlab.specs."""
