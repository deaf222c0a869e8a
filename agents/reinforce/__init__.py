"""REINFORCE with a baseline (REINFORCE++, SCST / ReMax): config, advantages and the algorithm."""

from agents.reinforce.config import REINFORCEConfig
from agents.reinforce.core import batch_normalized_advantages, greedy_baseline_advantages, returns_to_go
from agents.reinforce.reinforce import REINFORCE

__all__ = [
    "REINFORCE",
    "REINFORCEConfig",
    "batch_normalized_advantages",
    "greedy_baseline_advantages",
    "returns_to_go",
]
