"""``EpisodeRecorder``: an SB3 callback that records every finished episode and can stop at a budget.

SB3 counts time in env steps; text tasks are compared in episodes (an episode is one generated
text, of variable length). The recorder reads the ``info["episode"]`` entries that SB3's
``Monitor``/``VecMonitor`` add at the end of each episode and stops ``learn`` once ``max_episodes``
have finished, so SB3 runs can share an episode budget with :class:`agents.PPO`.

Example:
    >>> recorder = EpisodeRecorder(max_episodes=512)
    >>> model.learn(total_timesteps=512 * max_new_tokens, callback=recorder)  # doctest: +SKIP
    >>> recorder.returns[:3], recorder.lengths[:3]  # doctest: +SKIP
"""

from __future__ import annotations

from stable_baselines3.common.callbacks import BaseCallback

__all__ = ["EpisodeRecorder"]


class EpisodeRecorder(BaseCallback):
    """Records the return and length of every episode that ends, in the order they end.

    Args:
        max_episodes: Stop training once this many episodes have finished (``None``: never).
        verbose: SB3 verbosity.

    Attributes:
        returns: Episode returns (sum of rewards), as ``Monitor`` reports them.
        lengths: Episode lengths in steps (generated tokens).

    Raises:
        ValueError: ``max_episodes`` is not a positive int or ``None``.
    """

    def __init__(self, max_episodes: int | None = None, verbose: int = 0) -> None:
        super().__init__(verbose)
        if max_episodes is not None and (
            isinstance(max_episodes, bool) or not isinstance(max_episodes, int) or max_episodes < 1
        ):
            raise ValueError(f"max_episodes must be a positive int or None, got {max_episodes!r}")
        self.max_episodes = max_episodes
        self.returns: list[float] = []
        self.lengths: list[int] = []

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            episode = info.get("episode")
            if episode is not None and (self.max_episodes is None or len(self.returns) < self.max_episodes):
                self.returns.append(float(episode["r"]))
                self.lengths.append(int(episode["l"]))
        return self.max_episodes is None or len(self.returns) < self.max_episodes
