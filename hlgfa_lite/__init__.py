"""hlgfa_lite: HLGFA (high-/low-resolution guided feature alignment) for teaching and ablation."""

import os

# Before torch is imported: OpenMP's default wait policy made two runs of two threads on two cores
# 76x slower; ACTIVE is the fastest alone and ~4x slower then (measured, see run/threads.py). Yours wins.
os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")

from .errors import ConfigError, DataError, HLGFAError
from .method.config import BLOCKS, HLGFAConfig, default_config

__version__ = "0.1.0"
__all__ = ["BLOCKS", "ConfigError", "DataError", "HLGFAConfig", "HLGFAError", "__version__", "default_config"]
