"""GRPO (and Dr. GRPO, DAPO, GSPO): config, group-relative advantages and the algorithm."""

from agents.grpo.config import GRPOConfig
from agents.grpo.core import group_advantages
from agents.grpo.grpo import GRPO

__all__ = ["GRPO", "GRPOConfig", "group_advantages"]
