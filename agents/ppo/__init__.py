"""PPO for transformers causal LMs: its configuration, its tensor math (GAE, clipped losses) and the update."""

from agents.ppo.config import PPOConfig
from agents.ppo.core import compute_gae, policy_loss, value_loss
from agents.ppo.ppo import PPO

__all__ = ["PPO", "PPOConfig", "compute_gae", "policy_loss", "value_loss"]
