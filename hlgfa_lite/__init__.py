"""hlgfa_lite: HLGFA (high-/low-resolution guided feature alignment) for teaching and ablation."""

import os

# Before torch is imported: OpenMP threads wait passively, so two runs on the same cores slow
# each other down ~2x instead of 30-100x (see threads.py). A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .config import BLOCKS, HLGFAConfig, default_config
from .errors import ConfigError, DataError, HLGFAError

__version__ = "0.1.0"
__all__ = ["BLOCKS", "ConfigError", "DataError", "HLGFAConfig", "HLGFAError", "__version__", "default_config"]
