"""Metric learning: losses and mining, the P x K sampler, retrieval metrics and the embedding index."""
