"""REINFORCEConfig: the baseline choice on top of the critic-free update's hyper-parameters."""

from __future__ import annotations

from dataclasses import dataclass

from agents.common.policy_gradient import PolicyGradientConfig

BASELINES = ("batch", "greedy", "none")


# Token-level aggregation, as REINFORCE++.
@dataclass
class REINFORCEConfig(PolicyGradientConfig, defaults={"loss_type": "dapo"}):
    """Hyper-parameters of REINFORCE with a baseline: REINFORCE++ (``baseline="batch"``, Hu 2025) and
    SCST / ReMax (``baseline="greedy"``, Rennie et al. 2017; Li et al. 2023)."""

    baseline: str = "batch"
    """``"batch"``: returns normalised to zero mean and unit variance over all tokens of the rollout
    (REINFORCE++); ``"greedy"``: minus the return of the greedy completion of the same prompt, played
    through the same env (SCST, ReMax); ``"none"``: the plain returns."""

    def check(self) -> None:
        """The critic-free ranges plus ``baseline``."""
        super().check()
        self._require("baseline", self.baseline in BASELINES, f"one of {BASELINES}")
