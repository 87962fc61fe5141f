"""Data layer: image/mask I/O, the MVTec-AD layout reader, the demo generator and dataset converters."""

from .demo import DEFECT_TYPES, DEMO_CATEGORIES, make_demo_dataset
from .elpv import prepare_elpv
from .io import IMAGE_EXTENSIONS, image_hw, load_image, load_mask, read_mask
from .magnetic_tile import prepare_magnetic_tile
from .mvtec import AnomalyDataset, Sample, has_masks, list_categories, list_samples

__all__ = [
    "DEFECT_TYPES",
    "DEMO_CATEGORIES",
    "IMAGE_EXTENSIONS",
    "AnomalyDataset",
    "Sample",
    "has_masks",
    "image_hw",
    "list_categories",
    "list_samples",
    "load_image",
    "load_mask",
    "make_demo_dataset",
    "prepare_elpv",
    "prepare_magnetic_tile",
    "read_mask",
]
