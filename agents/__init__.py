"""Agents for textenv: on-policy RL algorithms for transformers causal LMs on one shared core.

``PPO`` (with a value head), and the critic-free ``GRPO`` (Dr. GRPO, DAPO, GSPO variants), ``RLOO`` and
``REINFORCE`` (REINFORCE++, SCST / ReMax), each ``Algo(policy, env, config=None)`` with ``learn``,
``predict``, ``generate``, ``save`` and ``Algo.load``.

Example:
    >>> from agents import GRPO, PPO
    >>> agent = PPO("tiny-lm", "TextGen-Sentiment-v0")  # doctest: +SKIP
    >>> agent.learn(total_episodes=512)  # doctest: +SKIP
"""

from agents.common.policies import ActorCriticPolicy, CausalLMPolicy
from agents.common.value_head import CausalLMWithValueHead
from agents.grpo import GRPO, GRPOConfig
from agents.ppo import PPO, PPOConfig
from agents.reinforce import REINFORCE, REINFORCEConfig
from agents.rloo import RLOO, RLOOConfig

__all__ = [
    "GRPO",
    "PPO",
    "REINFORCE",
    "RLOO",
    "ActorCriticPolicy",
    "CausalLMPolicy",
    "CausalLMWithValueHead",
    "GRPOConfig",
    "PPOConfig",
    "REINFORCEConfig",
    "RLOOConfig",
]
