"""RLOO: config, leave-one-out advantages and the algorithm."""

from agents.rloo.config import RLOOConfig
from agents.rloo.core import leave_one_out_advantages
from agents.rloo.rloo import RLOO

__all__ = ["RLOO", "RLOOConfig", "leave_one_out_advantages"]
