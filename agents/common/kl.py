"""Controllers of the KL-penalty coefficient (Ziegler et al. 2019, "Fine-Tuning Language Models from
Human Preferences", section 2.2).

The penalty itself lives in the env (the ``KLPenalty`` scorer, see ARCHITECTURE.md), which owns its
coefficient; :class:`KLCoefficient` changes it only where the user asks (an override, or the adaptive
controller), and a controller only decides the value.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agents.common.config import OnPolicyConfig


def _check_nonneg(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_pos(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


class FixedKLController:
    """Keeps the KL coefficient constant.

    Attributes:
        value: The coefficient.
    """

    def __init__(self, coef: float) -> None:
        """Creates the controller.

        Args:
            coef: The coefficient, >= 0.

        Raises:
            ValueError: If ``coef`` is negative or not a finite number.
        """
        self.value = _check_nonneg("coef", coef)

    def update(self, current_kl: float, n_steps: int) -> float:
        """Does nothing (the interface of :class:`AdaptiveKLController`).

        Args:
            current_kl: Ignored.
            n_steps: Ignored.

        Returns:
            The unchanged coefficient.
        """
        return self.value

    def state_dict(self) -> dict[str, Any]:
        """Returns ``{"type": "fixed", "value": coef}``."""
        return {"type": "fixed", "value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores the coefficient from :meth:`state_dict` output.

        Raises:
            ValueError: If ``state`` was written by another controller type or has a bad value.
        """
        _check_state(state, "fixed")
        self.value = _check_nonneg("value", state["value"])

    def __repr__(self) -> str:
        return f"FixedKLController(coef={self.value!r})"


class AdaptiveKLController:
    """Proportional controller steering the per-episode KL towards ``target`` (Ziegler et al. 2019)::

        e_t    = clip(KL_t / target - 1, -0.2, 0.2)
        beta  *= 1 + e_t * n_steps / horizon

    Attributes:
        value: The current coefficient ``beta``.
        target: Target KL per episode (nats, summed over the generated tokens).
        horizon: Adaptation horizon in episodes.
    """

    def __init__(self, init_coef: float, target: float, horizon: float) -> None:
        """Creates the controller.

        Args:
            init_coef: Initial coefficient, >= 0 (0 stays 0).
            target: Target KL per episode, > 0.
            horizon: Horizon in episodes, > 0.

        Raises:
            ValueError: If an argument is out of range or not a finite number.
        """
        self.value = _check_nonneg("init_coef", init_coef)
        self.target = _check_pos("target", target)
        self.horizon = _check_pos("horizon", horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        """Updates the coefficient after a rollout.

        Args:
            current_kl: Mean KL per episode of the rollout (a float or 0-d tensor); KL summed over an
                episode's tokens, averaged over its episodes.
            n_steps: Episodes in the rollout (Ziegler's batch size).

        Returns:
            The new coefficient.

        Raises:
            ValueError: If ``current_kl`` is not finite or ``n_steps`` is negative.
        """
        kl = float(current_kl)
        if not math.isfinite(kl):
            raise ValueError(f"current_kl must be finite, got {kl!r}")
        if isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral) or n_steps < 0:
            raise ValueError(f"n_steps must be an int >= 0, got {n_steps!r}")
        proportional_error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * int(n_steps) / self.horizon
        return self.value

    def state_dict(self) -> dict[str, Any]:
        """Returns ``{"type": "adaptive", "value": beta, "target": ..., "horizon": ...}``."""
        return {"type": "adaptive", "value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores the coefficient (and target and horizon) from :meth:`state_dict` output.

        Raises:
            ValueError: If ``state`` was written by another controller type or has a bad value.
        """
        _check_state(state, "adaptive")
        self.value = _check_nonneg("value", state["value"])
        self.target = _check_pos("target", state.get("target", self.target))
        self.horizon = _check_pos("horizon", state.get("horizon", self.horizon))

    def __repr__(self) -> str:
        return f"AdaptiveKLController(value={self.value!r}, target={self.target!r}, horizon={self.horizon!r})"


KLController = FixedKLController | AdaptiveKLController


def _check_state(state: Any, kind: str) -> None:
    if not isinstance(state, dict) or "value" not in state:
        raise ValueError(f"KL controller state must be a dict with a 'value' key, got {state!r}")
    if state.get("type", kind) != kind:
        raise ValueError(
            f"KL controller state of type {state.get('type')!r} cannot be loaded into a {kind!r} one"
        )


def make_kl_controller(config: OnPolicyConfig, initial: float | None = None) -> KLController:
    """Builds the controller named by ``config.kl_controller``.

    Args:
        config: Uses ``kl_controller``, ``init_kl_coef``, ``kl_target`` and ``kl_horizon``.
        initial: The starting coefficient; default ``config.init_kl_coef`` (0 when that is ``None``).

    Returns:
        A :class:`FixedKLController` (``"fixed"``) or an :class:`AdaptiveKLController` (``"adaptive"``).

    Raises:
        ValueError: If ``config.kl_controller`` is neither.
    """
    if initial is None:
        initial = 0.0 if config.init_kl_coef is None else config.init_kl_coef
    if config.kl_controller == "fixed":
        return FixedKLController(initial)
    if config.kl_controller == "adaptive":
        return AdaptiveKLController(initial, config.kl_target, config.kl_horizon)
    raise ValueError(f"kl_controller must be 'fixed' or 'adaptive', got {config.kl_controller!r}")


class KLCoefficient:
    """The coefficient of the env's KL-penalty terms over a run.

    The terms own their coefficient (``kl:tiny-lm:0.2`` trains at 0.2). An algorithm changes it only when
    asked: ``config.init_kl_coef`` set (it wins over the terms', and the run says so once) or the
    ``"adaptive"`` controller (which starts from the terms' own coefficient unless overridden).

    Args:
        terms: The env's ``KLPenalty`` terms.
        config: Uses ``init_kl_coef``, ``kl_controller``, ``kl_target`` and ``kl_horizon``.

    Raises:
        ValueError: The adaptive controller without an override on terms of different coefficients.
    """

    def __init__(self, terms: list[Any], config: OnPolicyConfig):
        self.terms = list(terms)
        coefs = sorted({float(t.coef) for t in self.terms})
        override = config.init_kl_coef
        adaptive = config.kl_controller == "adaptive"
        if override is None:
            if adaptive and len(coefs) > 1:
                raise ValueError(
                    f"the env's KL terms have different coefficients {coefs}; the adaptive controller steers one: "
                    "set init_kl_coef"
                )
            initial = coefs[0] if coefs else 0.0
        else:
            initial = float(override)
            if coefs and coefs != [initial]:
                warnings.warn(
                    f"init_kl_coef={initial:g} overrides the coefficient the env's KL penalty was built with "
                    f"({', '.join(f'{c:g}' for c in coefs)}); leave init_kl_coef=None to train with the env's",
                    stacklevel=3,
                )
        self.controller = make_kl_controller(config, initial)
        # Only an override or the adaptive controller writes the terms' coefficient.
        self.controls = bool(self.terms) and (override is not None or adaptive)
        self.apply()

    @property
    def value(self) -> float:
        """The controller's coefficient (the terms' own when it controls nothing)."""
        return float(self.controller.value)

    def apply(self) -> None:
        """Hands the controller's coefficient to the terms (when it controls them)."""
        if self.controls:
            for term in self.terms:
                term.coef = self.value

    def update(self, mean_kl: float, n_episodes: int) -> None:
        """One controller step after a rollout, then :meth:`apply`."""
        self.controller.update(mean_kl, n_episodes)
        self.apply()

    def state_dict(self) -> dict[str, Any]:
        """The controller's state and each term's coefficient."""
        return {"controller": self.controller.state_dict(), "coefs": [float(t.coef) for t in self.terms]}

    def check_state(self, state: dict[str, Any], coefs: Any) -> None:
        """Checks a saved state against this run (before anything is restored).

        Raises:
            ValueError: Another controller type, or another number of KL terms.
        """
        _check_state(state, self.controller.state_dict()["type"])
        if coefs is not None and (not isinstance(coefs, list) or len(coefs) != len(self.terms)):
            raise ValueError(
                f"the checkpoint holds KL coefficients {coefs!r} for {len(self.terms)} KL term(s) of the env"
            )

    def load_state_dict(self, state: dict[str, Any], coefs: list[float] | None) -> None:
        """Restores the controller and the terms' coefficients."""
        self.controller.load_state_dict(state)
        for term, coef in zip(self.terms, coefs or []):
            term.coef = float(coef)
