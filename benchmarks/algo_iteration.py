"""Time and model FLOPs of one iteration (rollout + update) of an :mod:`agents` algorithm, beside TRL's trainers.

Same models, tokenizer and prompts as the peers (``benchmarks/fixture.py``, ``shared/peers/common.py``): a
random-init GPT-2 of shape tiny/small/gpt2, exactly N sampled tokens per episode (EOS masked), a reward
that counts "good" (costs nothing). One warm-up iteration, then the best and median of ``--iters``.

The work matches each peer's by default:

* ``--algo ppo`` against TRL 0.11's ``PPOTrainer`` (``shared/peers/trl_ppo.py``): 4 PPO epochs over the batch
  with minibatch = batch (``--ppo-epochs``), learning rate 1.41e-5 (TRL's), and always a reference model:
  the env's KL penalty (coefficient ``--beta``, default 0.05) against a frozen copy of the initial model,
  scored after the rollout in one batched forward (``--no-kl-after-rollout``: the env steps the reference
  once per token). ``--beta 0`` drops the reference.
* ``--algo grpo`` / ``rloo`` against TRL 1.16's ``GRPOTrainer`` / ``RLOOTrainer`` (``shared/peers/trl_grpo.py``):
  ``--group`` completions per prompt, one update per rollout (``num_iterations=1``, one minibatch: the
  on-policy path, TRL's ``num_iterations=1``), learning rate 1e-6, and ``--beta`` TRL's default: the k3 KL
  to a frozen reference in the loss (GRPO 0: none, RLOO 0.05). ``reinforce++`` and ``scst`` likewise (beta 0).

**Model FLOPs** (``model_gflop``), counted from the shapes of the iteration's episodes: each row's real tokens
only (its prompt ``p`` and its ``n`` generated tokens; padding is not counted). A forward that scores the
``n`` tokens feeds ``s = p + n - 1`` tokens (the last token scores nothing) through ``layers`` blocks of
``2 (4 H^2 + 2 H I)`` FLOPs per token (the query/key/value, output and two MLP matrices; ``I`` the MLP width)
plus causal attention, ``2 H s (s + 1)`` per row and block (query x keys and weights x values, each token
over itself and the tokens before it), and the LM head, ``2 H V`` per scored token (``+ 2 H`` for PPO's value
head). The rollout is one such forward (KV-cached, token by token). A backward counts twice its forward. The
iteration adds what this implementation runs: the rollout (twice for SCST, whose greedy baseline is a second
rollout), one reference forward when there is a reference, the old-log-prob forward where the update is not
on-policy (PPO with more than one optimizer step per epoch; a critic-free update with several minibatches or
passes), and a forward and backward per update pass. Elementwise work (softmax, norms, the optimizer) is not
counted. ``achieved_gflop_per_s`` is the model FLOPs over the best iteration's seconds;
``matmul_gflop_per_s`` is ``torch.mm`` of two 1024 x 1024 matrices of the iteration's dtype (float32, or
bfloat16 with ``--bf16``), the best of 10, measured in this process with the same threads and clock; the
fraction is their ratio.

usage: python benchmarks/algo_iteration.py --algo {ppo,grpo,rloo,reinforce++,scst} --size small --batch 16 \\
    --new-tokens 32 [--group 4] [--beta B] [--ppo-epochs 4] [--bf16] [--threads 1 --clock cpu]
prints ``seconds_per_iteration`` (best), the phase split, the FLOP figures, and ``samples_per_s X`` last.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agents import registry
from benchmarks import fixture

ALGOS = registry.AGENTS
"""``--algo``: the :mod:`agents` algorithms of :mod:`agents.registry`."""

TRL_BETA = {"ppo": 0.05, "rloo": 0.05}
"""``--beta`` by default: a reference model wherever the TRL trainer compared has one (TRL 0.11's PPOTrainer
always, TRL 1.16's RLOO ``beta=0.05``); 0 for the others (TRL 1.16's GRPO ``beta=0.0``)."""

LEARNING_RATE = {"ppo": 1.41e-5}
"""The compared trainers' default learning rates (TRL 0.11's PPOConfig; TRL 1.16's 1e-6 for the others)."""


def count_good(prompts: list[str], texts: list[str], refs: list, metas: list) -> list[float]:
    """The peers' reward: occurrences of "good" in the text (costs nothing)."""
    return [float(t.count("good")) for t in texts]


def beta_of(args: argparse.Namespace) -> float:
    """``args.beta``, or the TRL default of ``args.algo`` (:data:`TRL_BETA`) when it is ``None``."""
    return TRL_BETA.get(args.algo, 0.0) if args.beta is None else args.beta


def build(args: argparse.Namespace) -> Any:
    """The agent of ``args.algo`` on a fixture env of ``args.batch`` rows.

    ``args`` holds ``algo, size, batch, new_tokens, group, beta, device, bf16`` and optionally ``ppo_epochs``
    (default 4), ``kl_after_rollout`` (default on) and ``chunk_size`` (``OnPolicyConfig.logits_chunk_size``,
    default ``None``: automatic).
    """
    from textenv.scorers import Callable
    from textenv.scorers.kl import KLPenalty
    from textenv.vector import TextGenVectorEnv

    tok = fixture.tokenizer()
    model = fixture.model(args.size)
    beta = beta_of(args)
    reward: Any = Callable(count_good, batched=True, name="good")
    if args.algo == "ppo" and beta > 0:
        reward = reward + KLPenalty(fixture.model(args.size), coef=beta)
    env = TextGenVectorEnv(
        num_envs=args.batch,
        tokenizer=tok,
        prompts=fixture.prompts(args.batch),
        reward=reward,
        max_prompt_tokens=8,
        max_new_tokens=args.new_tokens,
        vocab_size=model.config.vocab_size,
        eos_token_id=fixture.EOS_ID,
        autoreset_mode="Disabled",
        observation_format="torch",
        device=args.device,
    )
    common: dict[str, Any] = {
        "episodes_per_iteration": args.batch,
        "minibatch_size": args.batch,
        "learning_rate": LEARNING_RATE.get(args.algo, 1e-6),
        "device": args.device,
        "seed": 0,
        "mixed_precision": "bf16" if args.bf16 else "no",
        "logits_chunk_size": getattr(args, "chunk_size", None),
    }
    algo = registry.get(args.algo)
    cls = algo.load()
    if args.algo == "ppo":
        extra: dict[str, Any] = {
            "ppo_epochs": getattr(args, "ppo_epochs", 4),
            "init_kl_coef": beta,
            "kl_after_rollout": getattr(args, "kl_after_rollout", True),
        }
    else:  # one update per rollout (TRL's num_iterations=1)
        extra = {"num_iterations": 1, "beta": beta}
        if "group_size" in algo.config_fields():
            extra["group_size"] = args.group
    config = algo.make_config(**common, **extra)
    return cls(model, env, config, min_new_tokens=args.new_tokens, verbose=0, progress_bar=False)


# --- model FLOPs ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelShape:
    """What the FLOP count reads of a GPT-2-shaped causal LM: blocks, width, MLP width, vocabulary."""

    layers: int
    width: int
    inner: int
    vocab: int

    @classmethod
    def of(cls, model: torch.nn.Module) -> ModelShape:
        config: Any = model.config
        width = config.hidden_size
        inner = getattr(config, "n_inner", None) or getattr(config, "intermediate_size", None) or 4 * width
        return cls(config.num_hidden_layers, width, inner, config.vocab_size)


def forward_flops(
    shape: ModelShape, prompt: torch.Tensor, new: torch.Tensor, *, value_head: bool = False
) -> float:
    """FLOPs of one forward that scores every row's generated tokens (see the module docstring).

    Args:
        shape: The model.
        prompt: ``(N,)`` each row's real prompt tokens.
        new: ``(N,)`` each row's generated tokens.
        value_head: Add PPO's value head (``2 H`` per scored token).
    """
    H, inner, V = shape.width, shape.inner, shape.vocab
    s = (prompt + new - 1).double()  # (N,) tokens fed: the last one scores nothing
    trunk = 2 * (4 * H * H + 2 * H * inner) * s + 2 * H * s * (s + 1)  # (N,) per block
    head = (2 * H * V + (2 * H if value_head else 0)) * new.double()  # (N,)
    return float((shape.layers * trunk + head).sum())


@dataclass(frozen=True)
class IterationFlops:
    """Model FLOPs of one iteration by part."""

    rollout: float
    reference: float
    old: float
    update: float

    @property
    def total(self) -> float:
        return self.rollout + self.reference + self.old + self.update


def iteration_flops(agent: Any, args: argparse.Namespace, batch: Any) -> IterationFlops:
    """The model FLOPs ``agent`` computes in an iteration on ``batch`` (its rollout), by part."""
    cfg = agent.config
    P = batch.prompt_len
    prompt = batch.attention_mask[:, :P].sum(1)  # (N,)
    new = batch.mask.sum(1)  # (N,)
    ppo = args.algo == "ppo"
    shape = ModelShape.of(agent.lm)
    plain = forward_flops(shape, prompt, new)
    policy = forward_flops(shape, prompt, new, value_head=ppo)
    rollouts = 2 if getattr(cfg, "baseline", None) == "greedy" else 1
    reference = plain if beta_of(args) > 0 else 0.0
    if ppo:
        old_forward = not (cfg.num_minibatches == 1 and cfg.gradient_accumulation_steps == 1)
        passes = cfg.ppo_epochs
    else:
        old_forward = not (cfg.num_iterations == 1 and cfg.num_minibatches == 1)
        passes = cfg.num_iterations
    return IterationFlops(
        rollout=rollouts * plain,
        reference=reference,
        old=policy if old_forward else 0.0,
        update=passes * 3 * policy,
    )


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
"""``--clock``: wall time, or this process's CPU time (with 1 thread, barely disturbed by other jobs)."""


def matmul_rate(dtype: torch.dtype, device: torch.device, clock: str = "wall", n: int = 1024) -> float:
    """FLOP/s of ``torch.mm`` of two ``n x n`` matrices of ``dtype`` on ``device``: the best of 10, timed
    with ``CLOCKS[clock]`` (this process's threads)."""
    now = CLOCKS[clock]
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = float("inf")
    for _ in range(11):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = now()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, now() - start)
    return 2 * n**3 / best


# --- timing --------------------------------------------------------------------------------------------
def time_iterations(
    agent: Any, iters: int, new_tokens: int, clock: str = "wall"
) -> tuple[list[float], list[tuple[float, float]], list[Any]]:
    """Runs one warm-up and ``iters`` timed iterations of ``agent``, timed with ``CLOCKS[clock]``.

    Returns:
        ``(seconds of each timed iteration, (rollout_s, update_s) of each, the rollout batch of each)``.

    Raises:
        RuntimeError: An episode did not have exactly ``new_tokens`` tokens.
    """
    now = CLOCKS[clock]
    times, phases, batches = [], [], []
    seen: list[dict[str, Any]] = []
    for i in range(iters + 1):
        if agent.device.type == "cuda":
            torch.cuda.synchronize()
        start = now()
        # One iteration through the public loop; its callback hands over the iteration's rollout batch.
        agent.learn(agent.config.episodes_per_iteration, callback=seen.append)
        if agent.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = now() - start
        metrics = seen[-1]["metrics"]
        if i:  # the first iteration warms up
            times.append(elapsed)
            phases.append((metrics["rollout_time"], metrics["update_time"]))
            batches.append(seen[-1]["batch"])
        if metrics["episode_length"] != new_tokens:
            raise RuntimeError(f"episodes had {metrics['episode_length']} tokens, expected {new_tokens}")
    return times, phases, batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=ALGOS, default="grpo")
    parser.add_argument("--size", choices=sorted(fixture.SIZES), default="small")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--group", type=int, default=4, help="completions per prompt (GRPO, RLOO)")
    parser.add_argument(
        "--beta",
        type=float,
        default=None,
        help="KL weight to a frozen reference, 0: none (default: the compared TRL trainer's, "
        "ppo and rloo 0.05, the others 0); PPO: the env's KL penalty coefficient",
    )
    parser.add_argument("--ppo-epochs", type=int, default=4, help="PPO's epochs (TRL 0.11's ppo_epochs)")
    parser.add_argument(
        "--kl-after-rollout",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="PPO: score the env's KL after the rollout, one batched reference forward "
        "(--no-kl-after-rollout: the env steps the reference once per token)",
    )
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="logits_chunk_size (default: automatic; 0: full logits)"
    )
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall", help="cpu: this process's CPU time"
    )
    parser.add_argument(
        "--bf16", action="store_true", help="mixed_precision='bf16' (CUDA, or a CPU with native bf16)"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    agent = build(args)
    times, phases, batches = time_iterations(agent, args.iters, args.new_tokens, args.clock)
    best = min(times)
    i = times.index(best)
    rollout, update = phases[i]
    flops = iteration_flops(agent, args, batches[i])
    rate = matmul_rate(torch.bfloat16 if args.bf16 else torch.float32, agent.device, args.clock)
    precision = "bf16" if args.bf16 else "fp32"
    extra = (
        f" ppo_epochs={args.ppo_epochs} kl_after_rollout={args.kl_after_rollout}"
        if args.algo == "ppo"
        else ""
    )
    print(
        f"algo={args.algo} size={args.size} batch={args.batch} new={args.new_tokens} group={args.group} "
        f"beta={beta_of(args)}{extra} iters={args.iters} device={agent.device} {precision} "
        f"threads={torch.get_num_threads()} clock={args.clock}"
    )
    print(f"seconds_per_iteration {best:.3f} (median {statistics.median(times):.3f})")
    print(f"rollout_s {rollout:.3f} update_s {update:.3f} (wall)")
    print(
        f"model_gflop {flops.total / 1e9:.1f} (rollout {flops.rollout / 1e9:.1f}, reference "
        f"{flops.reference / 1e9:.1f}, old log-probs {flops.old / 1e9:.1f}, update {flops.update / 1e9:.1f})"
    )
    achieved = flops.total / best
    print(f"achieved_gflop_per_s {achieved / 1e9:.1f}")
    print(f"matmul_gflop_per_s {rate / 1e9:.1f} (torch.mm 1024^3, {precision})")
    print(f"fraction_of_matmul_rate {achieved / rate:.3f}")
    print(f"tokens_per_s {args.batch * args.new_tokens / best:.1f}")
    print(f"samples_per_s {args.batch / best:.2f}")


if __name__ == "__main__":
    main()
