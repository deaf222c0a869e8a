"""Agents for textenv: a PPO agent for transformers causal LMs."""

from agents.ppo.config import PPOConfig
from agents.value_head import CausalLMWithValueHead

__all__ = ["CausalLMWithValueHead", "PPOConfig"]
