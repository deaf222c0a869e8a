"""RLOOConfig: RLOO's own hyper-parameters on top of the critic-free update's."""

from __future__ import annotations

from dataclasses import dataclass

from agents.common.policy_gradient import PolicyGradientConfig


@dataclass
class RLOOConfig(PolicyGradientConfig):
    """Hyper-parameters of RLOO (REINFORCE Leave-One-Out, Ahmadian et al. 2024)."""

    group_size: int = 4
    """Completions sampled per prompt (k); each one's baseline is the mean return of the other k - 1. At
    least 2, and a divisor of ``episodes_per_iteration``."""

    def check(self) -> None:
        """The critic-free ranges plus ``group_size``."""
        super().check()
        self.check_group_size(self.group_size, minimum=2)
