"""textenv: text generation as Gymnasium reinforcement-learning environments.

Example:
    >>> import gymnasium as gym
    >>> import textenv  # registers TextGen-v0 and the task suite
    >>> env = gym.make("TextGen-v0")
"""

from textenv import assets
from textenv.env import TextGenEnv
from textenv.multiturn import Episode, Reply, ResponderError, Turn
from textenv.options import TextOptions
from textenv.prompts import Prompt, load_prompts
from textenv.registration import register_envs
from textenv.text_spec import TextSpec, text_spec

register_envs()

__all__ = [
    "Episode",
    "Prompt",
    "Reply",
    "ResponderError",
    "TextGenEnv",
    "TextOptions",
    "TextSpec",
    "Turn",
    "assets",
    "load_prompts",
    "register_envs",
    "text_spec",
]
__version__ = "0.1.0"
