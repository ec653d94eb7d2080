"""Self-critical sequence training: fine-tuning a trained decoder on CIDEr-D (Rennie et al. 2017)."""

from capstone.self_critical.cider import CiderD
from capstone.self_critical.training import check_self_critical_settings, fine_tune

__all__ = ["CiderD", "check_self_critical_settings", "fine_tune"]
