"""Model families, one file each. Importing :mod:`cnnlab.registry` loads them all on first use."""
