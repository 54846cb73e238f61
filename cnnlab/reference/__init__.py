"""cnnlab.reference."""
