"""Agents for textenv: a PPO agent for transformers causal LMs.

Example:
    >>> from agents import PPO
    >>> agent = PPO("tiny-lm", "TextGen-Sentiment-v0")  # doctest: +SKIP
    >>> agent.learn(total_episodes=512)  # doctest: +SKIP
"""

from agents.ppo.config import PPOConfig
from agents.ppo.ppo import PPO
from agents.value_head import CausalLMWithValueHead

__all__ = ["PPO", "CausalLMWithValueHead", "PPOConfig"]
