"""Binding an env's :class:`~textenv.scorers.KLPenalty` to a stable-baselines3 policy.

An SB3 algorithm does not hand its log-probs to the env, so a task with a KL term needs the
penalty to run the policy itself: :func:`bind_kl` finds every ``KLPenalty`` term in the env (a
single env, any wrappers, an SB3 ``DummyVecEnv``/``VecEnvWrapper`` stack, textenv's vector env or
its SB3 adapter) and binds it to the policy's LM. The penalty then follows the *current* weights:
the LM is shared, not copied, and the scorer rebuilds its KV cache after every optimizer step.

Example:
    >>> model = PPO(LMPolicy, env, policy_kwargs={"model": textenv.assets.path("tiny-lm")})  # doctest: +SKIP
    >>> bind_kl(env, model)  # doctest: +SKIP
    [KLPenalty(tiny-lm, coef=0.05, estimator='k1')]
"""

from __future__ import annotations

from typing import Any

from torch import nn

from textenv.scorers import KLPenalty, Scorer

__all__ = ["bind_kl", "find_kl_penalties"]


def find_kl_penalties(env: Any) -> list[KLPenalty]:
    """Every :class:`~textenv.scorers.KLPenalty` term of the rewards of ``env``.

    Args:
        env: A textenv env (possibly wrapped), a textenv vector env, its SB3 adapter, an SB3
            ``DummyVecEnv``/``VecEnvWrapper`` stack or a Gymnasium ``SyncVectorEnv``.

    Returns:
        The KL terms, one per sub-env that has one (a dense scorer serves exactly one env).

    Raises:
        TypeError: ``env`` runs its sub-envs in other processes (``SubprocVecEnv``, async vector
            envs), where binding a module in this process would have no effect, or ``env`` holds no
            textenv reward.
    """
    return [kl for reward in _rewards(env) for kl in reward.find(KLPenalty)]


def bind_kl(env: Any, model: Any, *, required: bool = True) -> list[KLPenalty]:
    """Binds every KL penalty of ``env`` to the policy LM of ``model``.

    Args:
        env: Anything :func:`find_kl_penalties` accepts; the env the algorithm trains on.
        model: An SB3 algorithm using :class:`~agents.sb3.LMPolicy`, the policy itself, or a causal LM
            module.
        required: Raise when ``env`` has no KL term (default); ``False`` returns ``[]`` instead.

    Returns:
        The bound KL terms.

    Raises:
        ValueError: ``required`` and the env has no KL term.
        TypeError: ``model`` has no LM to bind, or ``env`` is not supported (see above).
    """
    lm = _policy_lm(model)
    terms = find_kl_penalties(env)
    if required and not terms:
        raise ValueError(f"env {env!r} has no KLPenalty term to bind; pass required=False to allow that")
    for term in terms:
        term.bind(lm)
    return terms


def _policy_lm(model: Any) -> nn.Module:
    policy = getattr(model, "policy", model)  # an SB3 algorithm holds its policy in .policy
    lm = getattr(policy, "lm", None)
    if isinstance(lm, nn.Module):
        return lm
    if isinstance(policy, nn.Module) and not hasattr(policy, "features_extractor"):
        return policy  # a plain causal LM
    raise TypeError(
        f"cannot find a causal LM in {type(model).__name__}; expected an SB3 algorithm with "
        "policy=LMPolicy, an LMPolicy or a causal LM module"
    )


def _rewards(env: Any) -> list[Scorer]:
    """The reward scorer of every in-process sub-env of ``env``."""
    from stable_baselines3.common.vec_env import SubprocVecEnv, VecEnvWrapper

    if isinstance(env, SubprocVecEnv) or type(env).__name__ == "AsyncVectorEnv":
        raise TypeError(
            f"{type(env).__name__} runs its envs in other processes, so a KL penalty there cannot run this "
            "process's policy; use DummyVecEnv (make_vec_env's default) or textenv's vector env"
        )
    if isinstance(env, VecEnvWrapper):
        return _rewards(env.venv)
    reward = getattr(getattr(env, "unwrapped", env), "reward", None)
    if isinstance(reward, Scorer):  # TextGenEnv, TextGenVectorEnv
        return [reward]
    for attr in ("envs", "env", "vector_env", "venv"):  # DummyVecEnv/SyncVectorEnv, adapters, wrappers
        inner = getattr(env, attr, None)
        if isinstance(inner, (list, tuple)):
            return [r for sub in inner for r in _rewards(sub)]
        if inner is not None and inner is not env:
            return _rewards(inner)
    raise TypeError(
        f"{type(env).__name__} holds no textenv reward scorer; expected a textenv env or a stack of them"
    )
