"""``LMPolicy``: a stable-baselines3 actor-critic policy that *is* a transformers causal LM.

SB3's stock policies are built for control: pointed at a textenv env they flatten or one-hot the
token ids, put a freshly initialised ``Linear`` action head on top, re-initialise every layer
orthogonally and have no KV cache. ``LMPolicy`` instead

- reads the observation as integer token ids plus attention mask (SB3's ``preprocess_obs`` is
  bypassed, so nothing is cast to float, scaled or one-hot encoded);
- takes the action logits from the LM's own head at the last real position of each observation
  (``position_ids`` come from the mask, so the left-padded layout gives the same distribution as a
  plain forward of the unpadded prefix);
- puts a value head ``Linear(hidden, 1)`` (:class:`agents.CausalLMWithValueHead`) on the
  same hidden state;
- never re-initialises the pretrained weights (``ortho_init=True`` is refused) and disables dropout
  so that rollout and update forwards agree;
- optimises LM + value head with the algorithm's optimizer (Adam for PPO) under SB3's learning-rate
  schedule.

SB3 has no KV cache, so every policy call is a full forward over the observation. To keep that as
cheap as possible each row is right-aligned (its last real token moved to the last column), the
columns that are padding in every row are cropped, and only the last position's logits are computed
(``logits_to_keep=1``).

Hyper-parameters that work for LMs (SB3's defaults are tuned for control and do not; these are the
ones ``textenv-compare`` uses, with 16 envs of ``TextGen-Sentiment-v0``, T = 20)::

    learning_rate   1e-4 for the built-in tiny-lm; ~1.41e-5 (TRL's default) for GPT-2-sized models
    n_steps         max_new_tokens // 2 per env: about one episode per env per rollout
    batch_size      n_envs * n_steps // 2 (one SB3 sample is one generated token)
    n_epochs        4
    gamma           1.0            (episodic text: the final score must reach the first token)
    gae_lambda      0.95
    clip_range      0.2
    ent_coef        0.0            (an LM's entropy is already high; a bonus pushes it to random tokens)
    vf_coef         0.5
    max_grad_norm   1.0
    A2C: use_rms_prop=False (Adam), n_steps = max_new_tokens // 4, normalize_advantage=True,
         same learning_rate / gamma / gae_lambda / ent_coef / vf_coef / max_grad_norm.

Example:
    >>> import gymnasium as gym, textenv
    >>> from stable_baselines3 import PPO
    >>> from agents.sb3 import LMPolicy
    >>> env = gym.make("TextGen-v0", max_new_tokens=8)
    >>> model = PPO(LMPolicy, env, policy_kwargs={"model": "tiny-lm"},
    ...             learning_rate=1e-4, n_steps=64, batch_size=32, gamma=1.0, ent_coef=0.0)
    >>> model = model.learn(1024)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple, cast

import torch
from gymnasium import spaces
from stable_baselines3.common.distributions import CategoricalDistribution, Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from agents.common.policies import load_policy
from agents.common.value_head import CausalLMWithValueHead
from textenv.lm import accepts_kwarg, left_padded_positions, logits_width

OBS_KEYS = ("input_ids", "attention_mask")
# Float32 (SB3 stores some observations as float) represents every integer below 2**24 exactly.
_MAX_FLOAT_EXACT_ID = 2**24


class TokenBatch(NamedTuple):
    """Observations as an LM consumes them: each row right-aligned, all-padding columns cropped.

    Attributes:
        input_ids: ``(B, W)`` int64 token ids; the last real token of every row is at column ``W - 1``.
        attention_mask: ``(B, W)`` int64, 1 for real tokens.
        position_ids: ``(B, W)`` int64 positions counted from each row's first real token.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor


def check_token_observation_space(observation_space: spaces.Space) -> int:
    """Checks that ``observation_space`` is textenv's ``Dict(input_ids, attention_mask, ...)`` of 1-D boxes
    (``policy_mask`` and any other key are left to the env: the policy reads the tokens and their mask).

    Returns:
        The observation length ``L = P + T``.

    Raises:
        TypeError: The space is not a ``Dict`` of 1-D ``Box`` spaces with the two keys.
        ValueError: The two boxes have different lengths.
    """
    if not isinstance(observation_space, spaces.Dict) or not set(OBS_KEYS) <= set(observation_space.spaces):
        raise TypeError(
            f"LMPolicy needs textenv's observation space Dict(input_ids=Box, attention_mask=Box, ...), "
            f"got {observation_space!r}"
        )
    shapes = {}
    for key in OBS_KEYS:
        box = observation_space[key]
        if not isinstance(box, spaces.Box) or len(box.shape) != 1:
            raise TypeError(f"observation_space[{key!r}] must be a 1-D Box of integers, got {box!r}")
        shapes[key] = box.shape[0]
    if shapes["input_ids"] != shapes["attention_mask"]:
        raise ValueError(f"input_ids and attention_mask must have the same length, got {shapes}")
    return shapes["input_ids"]


def align_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TokenBatch:
    """Right-aligns every row of a batch of observations and crops the all-padding columns.

    A causal LM's output at a row's last real token depends only on the real tokens and their
    positions, so moving each row's real tokens to the end (padding to the front) and dropping columns
    that are padding in every row changes nothing but the cost. Afterwards the last column holds every
    row's last real token, so one ``logits_to_keep=1`` forward serves the whole batch.

    Args:
        input_ids: ``(B, L)`` token ids (any integer or integer-valued float dtype).
        attention_mask: ``(B, L)`` 1 for real tokens, 0 for padding.

    Returns:
        A :class:`TokenBatch` of width ``W <= L``.

    Raises:
        ValueError: A row has no real token, or the ids are not integer-valued.

    Example:
        >>> ids = torch.tensor([[0, 5, 6, 7, 0, 0]]); mask = torch.tensor([[0, 1, 1, 1, 0, 0]])
        >>> align_tokens(ids, mask).input_ids
        tensor([[5, 6, 7]])
    """
    ids = _as_long("input_ids", input_ids)
    mask = _as_long("attention_mask", attention_mask)
    if ids.dim() != 2 or ids.shape != mask.shape:
        raise ValueError(
            f"input_ids and attention_mask must both be (B, L), got {tuple(ids.shape)} and {tuple(mask.shape)}"
        )
    real = mask != 0
    has_real = real.any(-1)
    if not bool(has_real.all()):
        row = int((~has_real).nonzero()[0])
        raise ValueError(f"observation row {row} has no real token (attention_mask is all 0)")
    length = ids.shape[1]
    # Index of each row's last real token: the first 1 seen from the right.
    last = length - 1 - real.flip(-1).long().argmax(-1)  # (B,)
    shift = length - 1 - last  # (B,) how far each row moves right
    columns = torch.arange(length, device=ids.device)
    source = (columns[None, :] - shift[:, None]) % length  # aligned[:, j] = original[:, j - shift]
    ids, mask = ids.gather(1, source), mask.gather(1, source).clamp(max=1)
    start = int((mask != 0).long().argmax(-1).min())  # first column that is real in some row
    ids, mask = ids[:, start:], mask[:, start:]
    return TokenBatch(ids, mask, left_padded_positions(mask))


def _as_long(name: str, values: torch.Tensor) -> torch.Tensor:
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(values).__name__}")
    # SB3 buffers and wrappers may hand observations over as floats; they must still be exact ids.
    if values.is_floating_point() and (
        bool((values != values.round()).any()) or bool((values.abs() >= _MAX_FLOAT_EXACT_ID).any())
    ):
        raise ValueError(f"{name} must hold integer token ids, got non-integer or too large float values")
    return values.long()


class TokenIdsExtractor(BaseFeaturesExtractor):
    """The "features extractor" of :class:`LMPolicy`: token ids in, a :class:`TokenBatch` out.

    It replaces SB3's ``preprocess_obs`` + ``FlattenExtractor`` (which would cast the ids to float and
    flatten them) and has no parameters; the LM itself is the real feature extractor.

    Args:
        observation_space: textenv's ``Dict(input_ids, attention_mask)`` space.
    """

    def __init__(self, observation_space: spaces.Space) -> None:
        super().__init__(observation_space, features_dim=check_token_observation_space(observation_space))

    def forward(self, observations: PyTorchObs) -> TokenBatch:  # type: ignore[override]
        if not isinstance(observations, dict):
            raise TypeError(
                f"LMPolicy expects dict observations {OBS_KEYS}, got {type(observations).__name__}"
            )
        return align_tokens(observations["input_ids"], observations["attention_mask"])


class LMPolicy(ActorCriticPolicy):
    """Actor-critic SB3 policy whose actor is a causal LM's next-token distribution.

    Use it like any SB3 policy class; the LM comes in through ``policy_kwargs``::

        PPO(LMPolicy, env, policy_kwargs={"model": "gpt2"}, learning_rate=3e-5, gamma=1.0, ...)
        A2C(LMPolicy, env, policy_kwargs={"model": lm_module}, use_rms_prop=False, ...)

    The observation must be textenv's ``Dict(input_ids, attention_mask)`` and the action space a
    ``Discrete(n)`` with ``n <= `` the LM's logits width (``n`` smaller: only the first ``n`` logits are
    used, e.g. when a model pads its embedding matrix beyond the tokenizer).

    Attributes:
        model: The :class:`~agents.CausalLMWithValueHead` (LM + value head) being trained.

    Args:
        observation_space: textenv's observation space.
        action_space: ``Discrete(vocab)``.
        lr_schedule: Learning-rate schedule (passed by the algorithm).
        model: A built-in asset name (``"tiny-lm"``), a hub name or local path (a directory written by
            ``CausalLMWithValueHead.save_pretrained`` also restores its value head), a causal LM module
            (trained in place, not copied; load it yourself for ``dtype=`` and other loading options) or
            a ``CausalLMWithValueHead`` (e.g. one trained by :class:`agents.PPO`).
        disable_dropout: Set every dropout probability of the LM to 0 (default). SB3 collects
            rollouts in eval mode and updates in train mode; with dropout the PPO ratio is not 1 even
            before the first update.
        ortho_init: Must stay ``False``: orthogonal init would overwrite the pretrained weights.
        use_sde: Must stay ``False`` (SB3 passes it; gSDE is for continuous actions).
        optimizer_class: Optimizer over LM + value head (PPO: Adam; A2C passes RMSprop unless
            ``use_rms_prop=False``).
        optimizer_kwargs: Optimizer keyword arguments (default ``{"eps": 1e-5}`` for Adam, as SB3).

    Raises:
        TypeError: Wrong observation/action space or ``model`` type.
        ValueError: ``ortho_init=True``, ``use_sde=True`` or an action space wider than the LM's logits.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        model: str | os.PathLike[str] | nn.Module | None = None,
        *,
        disable_dropout: bool = True,
        ortho_init: bool = False,
        use_sde: bool = False,
        optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if model is None:
            raise TypeError('LMPolicy needs a model: pass policy_kwargs={"model": <name, path or module>}')
        if ortho_init:
            raise ValueError(
                "ortho_init=True would overwrite the LM's pretrained weights; LMPolicy needs False"
            )
        if use_sde:
            raise ValueError(
                "use_sde=True (gSDE) is for continuous actions; LMPolicy acts on Discrete tokens"
            )
        if not isinstance(action_space, spaces.Discrete):
            raise TypeError(f"LMPolicy needs a Discrete(vocab) action space, got {action_space!r}")
        check_token_observation_space(observation_space)
        wrapped = load_policy(model, value_head=True)
        width = logits_width(wrapped.lm)
        if int(action_space.n) > width:
            raise ValueError(
                f"the action space has {int(action_space.n)} tokens but the LM's head has only {width} "
                "logits; create the env with the model's tokenizer"
            )
        if disable_dropout:
            wrapped.disable_dropout()
        # ActorCriticPolicy.__init__ calls self._build(), which needs the model: hand it over there (in a
        # tuple, because nn.Module refuses sub-module attributes before its __init__ has run).
        self._pending_model: tuple[CausalLMWithValueHead, ...] = (wrapped,)
        self._model_name = os.fspath(model) if isinstance(model, (str, os.PathLike)) else None
        self._disable_dropout = disable_dropout
        self._keep_last = accepts_kwarg(wrapped.lm, "logits_to_keep")
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=[],
            ortho_init=False,
            use_sde=False,
            features_extractor_class=TokenIdsExtractor,
            share_features_extractor=True,
            normalize_images=False,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
        )

    # -- construction ------------------------------------------------------------------------------
    def _build(self, lr_schedule: Schedule) -> None:
        """Registers the LM + value head and the optimizer; unlike SB3's, adds no layer and no init."""
        (self.model,) = self._pending_model
        self._pending_model = ()
        self.optimizer = self.optimizer_class(  # type: ignore[call-arg]  # SB3 types it as the Optimizer base
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        # Used by policy.save()/load(): rebuild from the same source, then load the trained state dict.
        return {
            "observation_space": self.observation_space,
            "action_space": self.action_space,
            "lr_schedule": self._dummy_schedule,
            "model": self._model_name or self.model,
            "disable_dropout": self._disable_dropout,
            "optimizer_class": self.optimizer_class,
            "optimizer_kwargs": self.optimizer_kwargs,
        }

    @property
    def lm(self) -> nn.Module:
        """The transformers causal LM (``model.lm``, shared with ``self.model``); bind a KL penalty to it (see
        :func:`agents.sb3.bind_kl`) or ``save_pretrained`` it after training."""
        return self.model.lm

    # -- forward passes ----------------------------------------------------------------------------
    def extract_features(  # type: ignore[override]
        self, obs: PyTorchObs, features_extractor: BaseFeaturesExtractor | None = None
    ) -> TokenBatch:
        """Token ids and mask as the LM needs them; SB3's float/one-hot ``preprocess_obs`` is skipped."""
        return (features_extractor or self.features_extractor)(obs)

    def logits_and_values(
        self, obs: PyTorchObs, *, values: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Next-token logits ``(B, n_actions)`` float32 and, if asked, values ``(B,)`` float32.

        Args:
            obs: Dict of ``(B, L)`` ``input_ids`` and ``attention_mask`` tensors.
            values: Whether to compute the value head too.
        """
        batch = self.extract_features(obs)
        kwargs: dict[str, Any] = {"logits_to_keep": 1} if self._keep_last else {}
        out = self.lm(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=False,
            output_hidden_states=values,
            return_dict=True,
            **kwargs,
        )
        logits = out.logits[:, -1, : int(cast(spaces.Discrete, self.action_space).n)].float()  # (B, n)
        if not values:
            return logits, None
        hidden = out.hidden_states[-1][:, -1]  # (B, H): the last real token of every row
        # The head is float32 whatever the LM's dtype, as in CausalLMWithValueHead.forward.
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            value = self.model.value_head(hidden.to(torch.float32)).squeeze(-1)  # (B,)
        return logits, value

    def _logits_with_values(self, obs: PyTorchObs) -> tuple[torch.Tensor, torch.Tensor]:
        logits, values = self.logits_and_values(obs)
        if values is None:  # logits_and_values(values=True) always computes them
            raise RuntimeError("LMPolicy computed no values")
        return logits, values

    def _distribution(self, logits: torch.Tensor) -> Distribution:
        if not isinstance(self.action_dist, CategoricalDistribution):
            raise TypeError(f"LMPolicy needs a categorical action distribution, got {self.action_dist!r}")
        return self.action_dist.proba_distribution(action_logits=logits)

    def forward(
        self, obs: PyTorchObs, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Samples actions; returns ``(actions (B,), values (B, 1), log_probs (B,))`` as SB3 expects."""
        logits, values = self._logits_with_values(obs)
        distribution = self._distribution(logits)
        actions = distribution.get_actions(deterministic=deterministic)
        return actions, values.unsqueeze(-1), distribution.log_prob(actions)

    def evaluate_actions(
        self, obs: PyTorchObs, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(values (B, 1), log_prob (B,), entropy (B,))`` of ``actions`` under the current policy."""
        logits, values = self._logits_with_values(obs)
        distribution = self._distribution(logits)
        return values.unsqueeze(-1), distribution.log_prob(actions.reshape(-1)), distribution.entropy()

    def get_distribution(self, obs: PyTorchObs) -> Distribution:
        """The categorical next-token distribution (the LM's softmax at the last real position)."""
        logits, _ = self.logits_and_values(obs, values=False)
        return self._distribution(logits)

    def predict_values(self, obs: PyTorchObs) -> torch.Tensor:
        """Values ``(B, 1)`` of the observations."""
        _, values = self._logits_with_values(obs)
        return values.unsqueeze(-1)
