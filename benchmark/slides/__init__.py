"""Whole-slide image pipeline: slides → tissue mask → patch grid → patch-feature bags.

Modules, in the order a slide goes through them: :mod:`~benchmark.slides.reader`
(backends, mpp resolution), :mod:`~benchmark.slides.tissue` (segmentation,
GeoJSON, overview PNG), :mod:`~benchmark.slides.patching` (global grid at a
target mpp), :mod:`~benchmark.slides.encoders` (timm encoder registry, local
weights), :mod:`~benchmark.slides.extract` (DataLoader, HDF5 bags, report).
"""

from benchmark.slides.encoders import ENCODERS, load_encoder
from benchmark.slides.extract import PrepareReport, SlideResult, prepare_slides, read_slide_list
from benchmark.slides.patching import PatchGrid, make_grid
from benchmark.slides.reader import MPP_RANGE, SlideReader, resolve_mpp
from benchmark.slides.tissue import TissueParams, segment_tissue

__all__ = [
    "ENCODERS",
    "MPP_RANGE",
    "PatchGrid",
    "PrepareReport",
    "SlideReader",
    "SlideResult",
    "TissueParams",
    "load_encoder",
    "make_grid",
    "prepare_slides",
    "read_slide_list",
    "resolve_mpp",
    "segment_tissue",
]
