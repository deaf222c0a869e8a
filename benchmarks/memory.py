"""Training memory of the log-probs: the LM head in chunks (``agents.common.logprobs``) against the full logits.

Both modes are a GRPO agent (``benchmarks/algo_iteration.py``'s ``build``) whose config sets
``OnPolicyConfig.logits_chunk_size``: ``plain`` is ``logits_chunk_size=0`` (the full ``(B, T, V)`` logits),
``chunked`` is ``--chunk-size`` (default ``auto``: ``logits_chunk_size=None``, automatic chunks). Two figures,
each mode in a fresh process (so that one mode's freed memory never hides the other's peak):

* ``loss_peak_ratio`` (default): the extra memory of one training forward and backward of the agent's policy
  (``CausalLMPolicy.forward``, as the GRPO update runs it), chunked / plain. The extra is the peak above what
  the process holds before the forward: the agent (weights, env), the weights' gradients (allocated, zero)
  and the Adam state (set up by one step on zero gradients, so that no forward ran before the measurement). On CPU the peak is the resident set's high-water mark (``VmHWM``, reset
  through ``/proc/self/clear_refs``; torch's CPU allocator returns large blocks to the OS, and tracemalloc
  does not see torch), on CUDA ``torch.cuda.max_memory_allocated``. The batch: ``--batch`` fixture prompts
  left-padded to ``--prompt-tokens``, then ``--new-tokens`` random generated tokens (no EOS; EOS is masked
  for all of them, ``min_new_tokens=new``, as the TRL comparison forces exactly ``new`` tokens), all in
  one micro-batch. The loss is GRPO's on-policy surrogate written inline,
  ``-mean(adv * exp(logp - logp.detach()))`` with group-normalised random advantages (groups of 4), and
  the entropy is computed without grad as a statistic, as GRPO does.
* ``peak_rss_mb`` (``--iteration``, CPU): the whole process's peak RSS over two GRPO iterations (rollout,
  update; model building included), beside ``shared/peers/trl_grpo.py SIZE BATCH NEW 1 --bf16`` (a
  warm-up step and one timed step, whose ``peak_rss_mb`` is TRL's).

With glibc's default settings, freed blocks under 32 MiB stay in its heap, so the resident set also
counts heap fragmentation; ``--mmap-threshold 1048576`` makes RSS follow the live tensors.

usage: python benchmarks/memory.py --size wide-vocab --batch 8 --new-tokens 192 --bf16 [--chunk-size auto|N] \
           [--mmap-threshold 1048576]
       python benchmarks/memory.py --size wide-vocab --batch 8 --new-tokens 192 --bf16 --iteration
prints each mode's figures, then ``loss_peak_ratio X`` (or ``peak_rss_mb`` per mode) as its last lines.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import fixture

MODES = ("plain", "chunked")


def _status_kb(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> None:
    """Resets ``VmHWM`` to the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def logits_chunk_size(mode: str, chunk_size: str) -> int | None:
    """``OnPolicyConfig.logits_chunk_size`` of ``mode``: 0 (full logits) for ``plain``; for ``chunked``
    ``None`` (automatic) when ``chunk_size`` is ``"auto"``, else that many positions."""
    if mode == "plain":
        return 0
    return None if chunk_size == "auto" else int(chunk_size)


def build_agent(args: argparse.Namespace, mode: str) -> Any:
    """The GRPO agent of ``mode`` (its ``logits_chunk_size``), beta 0, on the fixture of ``args.size``."""
    from benchmarks import algo_iteration

    ns = argparse.Namespace(
        algo="grpo",
        size=args.size,
        batch=args.batch,
        new_tokens=args.new_tokens,
        group=4,
        beta=0.0,
        device=args.device,
        bf16=args.bf16,
        chunk_size=logits_chunk_size(mode, args.chunk_size),
    )
    return algo_iteration.build(ns)


def batch(args: argparse.Namespace, vocab: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Left-padded fixture prompts followed by ``new_tokens`` random non-special tokens (seeded)."""
    tok = fixture.tokenizer()
    enc = tok(
        fixture.prompts(args.batch),
        padding="max_length",
        truncation=True,
        max_length=args.prompt_tokens,
        return_tensors="pt",
    )
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(3, vocab, (args.batch, args.new_tokens), generator=g)  # (B, T), no pad/EOS
    input_ids = torch.cat([enc["input_ids"], tokens], dim=1)  # (B, P + T)
    attention_mask = torch.cat([enc["attention_mask"], torch.ones_like(tokens)], dim=1)
    position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)
    rewards = torch.randn(args.batch // 4, 4, generator=g)  # groups of 4 completions per prompt
    adv = ((rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)).flatten()
    out = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}
    out |= {"tokens": tokens, "advantages": adv}
    return {k: v.to(device) for k, v in out.items()}


def measure_loss(args: argparse.Namespace, mode: str) -> dict[str, float]:
    """One training forward + backward of the agent's policy in this process; the peak above the agent,
    its gradients and Adam state."""
    agent = build_agent(args, mode)
    policy, device = agent.policy, agent.device
    policy.train()
    # Gradients and Adam state allocated without running a forward (whose freed memory would blur the
    # baseline); the gradients stay allocated and the backward accumulates into them.
    params = [p for p in policy.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.zeros_like(p)
    agent.optimizer.step()
    agent.optimizer.zero_grad(set_to_none=False)
    b = batch(args, agent.spec.vocab_size, device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        base_mb = torch.cuda.memory_allocated(device) / 2**20
    else:
        base_mb = _status_kb("VmRSS") / 1024
        _reset_peak_rss()
    start = time.perf_counter()
    out = policy(b["input_ids"], b["attention_mask"], b["position_ids"], b["tokens"], entropy="value")
    logp = out.logprobs  # (B, T)
    loss = -(b["advantages"][:, None] * torch.exp(logp - logp.detach())).mean()
    loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mb = _status_kb("VmHWM") / 1024
    seconds = time.perf_counter() - start
    grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])).item()
    return {
        "base_mb": base_mb,
        "peak_mb": peak_mb,
        "extra_mb": peak_mb - base_mb,
        "seconds": seconds,
        "loss": loss.item(),
        "grad_norm": grad_norm,
        "entropy": out.entropy.mean().item() if out.entropy is not None else float("nan"),
    }


def measure_iteration(args: argparse.Namespace, mode: str) -> dict[str, float]:
    """Two GRPO iterations (a warm-up and one more, as ``trl_grpo.py ... 1``); the process's peak RSS."""
    from benchmarks import algo_iteration

    agent = build_agent(args, mode)
    times, _, _ = algo_iteration.time_iterations(agent, 1, args.new_tokens)
    peak = (
        torch.cuda.max_memory_allocated(agent.device) / 2**20
        if agent.device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    )
    return {"peak_mb": peak, "seconds": times[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(fixture.SIZES), default="wide-vocab")
    parser.add_argument("--batch", type=int, default=8, help="completions (a multiple of 4, the group)")
    parser.add_argument("--new-tokens", type=int, default=192)
    parser.add_argument("--prompt-tokens", type=int, default=8)
    parser.add_argument(
        "--chunk-size", default="auto", help="the chunked mode's positions per chunk, or 'auto' (automatic)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA, or a CPU with native bf16)")
    parser.add_argument("--iteration", action="store_true", help="whole GRPO iterations' peak_rss_mb")
    parser.add_argument(
        "--mmap-threshold",
        type=int,
        help="glibc's M_MMAP_THRESHOLD in bytes for the measured processes (e.g. 1048576): freed tensors "
        "then leave the resident set at once, so that RSS follows the live tensors as "
        "max_memory_allocated does on CUDA; default: glibc's own (blocks under 32 MiB stay in its heap)",
    )
    parser.add_argument("--only", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch % 4:
        parser.error(f"--batch must be a multiple of 4 (the GRPO group), got {args.batch}")
    if args.chunk_size != "auto" and not (args.chunk_size.isdigit() and int(args.chunk_size) > 0):
        parser.error(f"--chunk-size must be 'auto' or a positive int, got {args.chunk_size!r}")
    if args.only:
        warnings.filterwarnings("ignore")
        torch.set_num_threads(args.threads)
        measure = measure_iteration if args.iteration else measure_loss
        print(json.dumps(measure(args, args.only)))
        return
    results = {}
    for mode in MODES:
        cmd = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--only", mode]
        env = dict(os.environ)
        if args.mmap_threshold is not None:
            env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        if out.returncode:
            raise SystemExit(f"{mode} run failed:\n{out.stderr[-3000:]}")
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    precision = "bf16" if args.bf16 else "fp32"
    print(f"command: python benchmarks/memory.py {' '.join(sys.argv[1:])}")
    print(
        f"grpo size={args.size} batch={args.batch} prompt={args.prompt_tokens} new={args.new_tokens} "
        f"{precision} device={args.device} threads={args.threads} chunk_size={args.chunk_size} "
        f"malloc_mmap_threshold={args.mmap_threshold or 'glibc default'}"
    )
    if args.iteration:
        memory = "peak_rss_mb" if args.device == "cpu" else "peak_cuda_mb"
        for mode, r in results.items():
            print(f"{mode:<8} {memory} {r['peak_mb']:.0f}  s/iter {r['seconds']:.1f}")
        return
    for mode, r in results.items():
        print(
            f"{mode:<8} base_mb {r['base_mb']:.0f}  peak_mb {r['peak_mb']:.0f}  extra_mb {r['extra_mb']:.0f}  "
            f"s {r['seconds']:.2f}  loss {r['loss']:.6g}  grad_norm {r['grad_norm']:.6g}  "
            f"entropy {r['entropy']:.6g}"
        )
    print(f"loss_peak_ratio {results['chunked']['extra_mb'] / results['plain']['extra_mb']:.3f}")


if __name__ == "__main__":
    main()
