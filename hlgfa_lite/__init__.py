"""hlgfa_lite: HLGFA (high-/low-resolution guided feature alignment) for teaching and ablation."""

import os

# Before torch is imported: OpenMP's default wait policy makes runs that share cores crawl; ACTIVE is
# the fastest alone and degrades least (run/threads.py, docs/DESIGN.md). A value you set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")

from .errors import ConfigError, DataError, HLGFAError
from .method.config import BLOCKS, HLGFAConfig, default_config

__version__ = "0.1.0"
__all__ = ["BLOCKS", "ConfigError", "DataError", "HLGFAConfig", "HLGFAError", "__version__", "default_config"]
