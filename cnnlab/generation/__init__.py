"""Image generation: measures of generated samples (FID, KID, diversity), sample grids and latent walks."""

from .measures import FeatureSpace, frechet_distance, kernel_inception_distance, pairwise_diversity
from .grids import image_grid, interpolate_latents, to_uint8

__all__ = ["FeatureSpace", "frechet_distance", "image_grid", "interpolate_latents", "kernel_inception_distance",
           "pairwise_diversity", "to_uint8"]
