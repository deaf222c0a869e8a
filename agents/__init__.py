"""Agents for textenv: on-policy RL algorithms for transformers causal LMs on one shared core.

Example:
    >>> from agents import PPO
    >>> agent = PPO("tiny-lm", "TextGen-Sentiment-v0")  # doctest: +SKIP
    >>> agent.learn(total_episodes=512)  # doctest: +SKIP
"""

from agents.common.value_head import CausalLMWithValueHead
from agents.ppo import PPO, PPOConfig

__all__ = ["PPO", "CausalLMWithValueHead", "PPOConfig"]
