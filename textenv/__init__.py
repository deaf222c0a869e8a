"""textenv: text generation as Gymnasium reinforcement-learning environments.

Example:
    >>> import gymnasium as gym
    >>> import textenv  # registers TextGen-v0 and the task suite
    >>> env = gym.make("TextGen-v0")
"""

from textenv import assets
from textenv.core import TextGenCore
from textenv.env import TextGenEnv
from textenv.prompts import Prompt, load_prompts
from textenv.registration import register_envs

register_envs()

__all__ = ["Prompt", "TextGenCore", "TextGenEnv", "assets", "load_prompts", "register_envs"]
__version__ = "0.1.0"
