"""stable-baselines3 support: a causal LM as an SB3 actor-critic policy, KL binding, episode recording.

Example:
    >>> from stable_baselines3 import PPO
    >>> from agents.sb3 import LMPolicy, bind_kl
    >>> model = PPO(LMPolicy, env, policy_kwargs={"model": "tiny-lm"}, learning_rate=1e-4, gamma=1.0)  # doctest: +SKIP
    >>> bind_kl(env, model, required=False)  # the env's KL penalty, if any, follows the policy  # doctest: +SKIP
"""

from agents.sb3.callbacks import EpisodeRecorder
from agents.sb3.kl import bind_kl, find_kl_penalties
from agents.sb3.policy import LMPolicy, TokenBatch, TokenIdsExtractor, align_tokens

__all__ = [
    "EpisodeRecorder",
    "LMPolicy",
    "TokenBatch",
    "TokenIdsExtractor",
    "align_tokens",
    "bind_kl",
    "find_kl_penalties",
]
