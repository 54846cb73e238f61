"""Visualisation: filters, feature maps, class activation maps, classic kernels, training curves,
confusion matrices and embeddings. Functions return NumPy arrays or matplotlib figures (Agg backend);
the ``cnnlab viz`` command writes them as PNG files."""

from .cam import default_target_layer, cam_maps, grad_cam, grad_cam_pp, saliency
from .features import feature_maps
from .stages import feature_stages
from .style import overlay_heatmap

__all__ = ["default_target_layer", "cam_maps", "grad_cam", "grad_cam_pp", "saliency", "feature_maps",
           "feature_stages", "overlay_heatmap"]
