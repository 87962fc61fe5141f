"""hlgfa_lite: HLGFA (high-/low-resolution guided feature alignment) for teaching and ablation."""

from .config import BLOCKS, HLGFAConfig, default_config
from .errors import ConfigError, DataError, HLGFAError

__version__ = "0.1.0"
__all__ = ["BLOCKS", "ConfigError", "DataError", "HLGFAConfig", "HLGFAError", "__version__", "default_config"]
