"""Rollout throughput of ``TextGenVectorEnv`` with the policy in the loop, against HF ``generate``.

A rollout samples exactly N tokens for a batch of B prompts (8 prompt tokens) through
``gymnasium.make_vec("TextGen-v0", num_envs=B, ...)``: every step the policy (a random-init
GPT-2 of the shared fixture, stepped with its own KV cache by :class:`textenv.lm.IncrementalLM`,
one forward per step) samples one token per row with EOS masked out, and the env appends it,
ends episodes and scores them with a cheap callable reward. HF ``generate`` samples the same
number of tokens from the same model and prompts (``do_sample=True, top_k=0``,
``min_new_tokens = max_new_tokens = N``, as ``shared/peers/hf_generate.py`` does); both are timed
best-of-``--repeats`` after a warm-up, interleaved so that load on the machine hits both alike.

usage::

    python benchmarks/rollout.py --size tiny --batch 16 --new-tokens 64 [--device cpu|cuda]
    python benchmarks/rollout.py --size tiny --textrl /tmp/textenv-peers/bin/python  # + TextRL's ratio
    python benchmarks/rollout.py --size tiny --scaling [--with-generate]

The last line printed is ``tokens_per_s X`` (the env rollout). ``--sampler multinomial`` samples
with ``torch.multinomial`` as ``generate`` does; the default ``cdf`` draws one uniform per row
and inverts the cumulative distribution (the same distribution, ~10x cheaper on CPU).
``--textrl PYTHON`` also runs ``shared/peers/textrl_rollout.py`` (TextRL needs its own venv:
``bash ../shared/peers/setup.sh``). On a shared machine ``--threads 1 --clock cpu`` times this
process's CPU time, which other processes' load disturbs much less than wall time.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import torch

try:
    from benchmarks import fixture
except ImportError:  # run as `python benchmarks/rollout.py`: this folder is on sys.path
    import fixture  # type: ignore[no-redef]

import textenv  # noqa: F401  (registers TextGen-v0)
from textenv.lm import IncrementalLM, resolve_device

PROMPT_TOKENS = 8
PEERS_DIR = Path(__file__).resolve().parents[2] / "shared" / "peers"
SCALING_BATCHES = (1, 4, 16, 64, 256)
SCALING_NEW_TOKENS = (16, 64, 256, 512)


def text_length(prompt: str, text: str, references: list[str], meta: dict) -> float:
    """The cheap reward: characters generated."""
    return float(len(text))


def sample_cdf(logits: torch.Tensor) -> torch.Tensor:
    """One draw per row from ``softmax(logits)`` by inverting its CDF (one uniform per row)."""
    cdf = torch.softmax(logits, dim=-1).cumsum_(-1)  # (B, V)
    u = torch.rand(logits.shape[0], 1, device=logits.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=logits.shape[1] - 1)


def sample_multinomial(logits: torch.Tensor) -> torch.Tensor:
    """One draw per row with ``torch.multinomial`` (what ``generate`` uses)."""
    return torch.multinomial(torch.softmax(logits, dim=-1), 1).squeeze(1)


SAMPLERS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "cdf": sample_cdf,
    "multinomial": sample_multinomial,
}


class EnvRollout:
    """B rows of ``TextGen-v0`` plus a KV-cached policy; :meth:`run` samples N tokens per row."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        batch: int,
        new_tokens: int,
        device: torch.device,
        sampler: str,
    ):
        self.model = model
        self.new_tokens = new_tokens
        self.sample = SAMPLERS[sampler]
        self.env = gym.make_vec(
            "TextGen-v0",
            num_envs=batch,
            tokenizer=tokenizer,
            prompts=fixture.prompts(max(batch, 16)),
            reward=text_length,
            max_prompt_tokens=PROMPT_TOKENS,
            max_new_tokens=new_tokens,
            vocab_size=model.config.vocab_size,
            eos_token_id=fixture.EOS_ID,
            device=device,
            observation_format="torch",  # the policy reads tensors on its device: no host copies
        )
        self.policy = IncrementalLM(model, num_rows=batch, max_length=PROMPT_TOKENS + new_tokens)
        self.rows = torch.arange(batch, device=device)

    @torch.no_grad()
    def run(self, seed: int = 0) -> int:
        """One rollout; returns the number of tokens generated (checks it is exactly B * N)."""
        obs, _ = self.env.reset(seed=seed)
        logits = self.policy.reset_rows(
            self.rows, obs["input_ids"][:, :PROMPT_TOKENS], obs["attention_mask"][:, :PROMPT_TOKENS]
        )
        done = 0
        for t in range(self.new_tokens):
            logits[:, fixture.EOS_ID] = float("-inf")  # exactly N tokens, as min_new_tokens does for generate
            actions = self.sample(logits)
            _, _, terminated, _, infos = self.env.step(actions)
            if t + 1 < self.new_tokens:
                logits = self.policy.step(actions)
            else:
                done = int(terminated.sum())
        if done != self.env.num_envs or not (infos["num_tokens"] == self.new_tokens).all():
            raise RuntimeError(f"expected every row to end after {self.new_tokens} tokens, {done} did")
        return self.env.num_envs * self.new_tokens


class GenerateRollout:
    """HF ``generate`` sampling exactly N new tokens for the same prompts."""

    def __init__(self, model: torch.nn.Module, tokenizer, batch: int, new_tokens: int, device: torch.device):
        self.model = model
        self.new_tokens = new_tokens
        self.inputs = tokenizer(fixture.prompts(batch), return_tensors="pt", padding=True).to(device)
        with torch.no_grad():  # warm-up, as hf_generate.py
            model.generate(**self.inputs, do_sample=True, max_new_tokens=4, min_new_tokens=4, pad_token_id=0)

    @torch.no_grad()
    def run(self) -> int:
        out = self.model.generate(
            **self.inputs,
            do_sample=True,
            top_k=0,
            max_new_tokens=self.new_tokens,
            min_new_tokens=self.new_tokens,
            pad_token_id=fixture.PAD_ID,
        )
        return (out.shape[1] - self.inputs["input_ids"].shape[1]) * out.shape[0]


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
clock = (
    time.perf_counter
)  # --clock cpu: this process's CPU time (robust on a shared machine, with --threads 1)


def _timed(fn: Callable[[], int], device: torch.device) -> tuple[float, int]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = clock()
    tokens = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return clock() - start, tokens


def compare(
    size: str,
    batch: int,
    new_tokens: int,
    device: torch.device,
    sampler: str,
    repeats: int,
    textrl_python: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> None:
    """Prints ours, generate (and TextRL) and the ratios; the last line is ``tokens_per_s X`` (ours)."""
    tokenizer = fixture.tokenizer()
    model = fixture.model(size).to(device=device, dtype=dtype)  # both rollouts run the same weights
    ours = EnvRollout(model, tokenizer, batch, new_tokens, device, sampler)
    ours.run(seed=0)  # warm-up
    hf = GenerateRollout(model, tokenizer, batch, new_tokens, device)
    best_ours = best_hf = float("inf")
    for r in range(repeats):  # interleaved, so a burst of load on the machine hits both
        seconds, tokens = _timed(lambda r=r: ours.run(seed=r), device)
        if tokens != batch * new_tokens:
            raise RuntimeError(f"env rollout generated {tokens} tokens, expected {batch * new_tokens}")
        best_ours = min(best_ours, seconds)
        seconds, tokens = _timed(hf.run, device)
        if tokens != batch * new_tokens:
            raise RuntimeError(f"generate produced {tokens} tokens, expected {batch * new_tokens}")
        best_hf = min(best_hf, seconds)
    ours_tps, hf_tps = batch * new_tokens / best_ours, batch * new_tokens / best_hf
    print(
        f"size={size} batch={batch} new={new_tokens} device={device} sampler={sampler} "
        f"threads={torch.get_num_threads()} clock={_clock_name()} dtype={str(dtype).removeprefix('torch.')}"
    )
    print(f"generate_tokens_per_s {hf_tps:.1f}")
    print(f"ratio_vs_generate {ours_tps / hf_tps:.2f}")
    if textrl_python:
        textrl_tps = textrl(textrl_python, size, batch, new_tokens)
        print(f"textrl_tokens_per_s {textrl_tps:.1f}")
        print(f"ratio_vs_textrl {ours_tps / textrl_tps:.1f}")
    print(f"tokens_per_s {ours_tps:.1f}")


def textrl(python: str, size: str, batch: int, new_tokens: int) -> float:
    """TextRL's rollout throughput from the peer script, run by ``python`` (its own venv, see setup.sh)."""
    script = PEERS_DIR / "textrl_rollout.py"
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found; the TextRL peer lives in shared/peers next to the repo")
    cmd = [python, script.name, size, str(batch), str(new_tokens)]
    out = subprocess.run(cmd, cwd=PEERS_DIR, capture_output=True, text=True, check=True).stdout
    found = re.findall(r"^tokens_per_s ([0-9.]+)$", out, flags=re.M)
    if not found:
        raise RuntimeError(f"{' '.join(cmd)} printed no 'tokens_per_s' line:\n{out}")
    return float(found[-1])


def env_only(rollout: EnvRollout, repeats: int) -> float:
    """Best seconds per step of the env alone (fixed random non-EOS actions, no policy)."""
    env, n = rollout.env, rollout.new_tokens
    actions = torch.randint(
        fixture.EOS_ID + 1, int(env.single_action_space.n), (n, env.num_envs), device=env.device
    )
    best = float("inf")
    for r in range(repeats + 1):  # the first run warms up
        env.reset(seed=r)
        start = clock()
        for t in range(n):
            env.step(actions[t])
        best = min(best, clock() - start) if r else best
    return best / n


def scaling(size: str, device: torch.device, sampler: str, repeats: int, with_generate: bool) -> None:
    """Prints tokens/s and per-token costs for every (batch, new tokens) of the scaling grid.

    Columns: the rollout (policy + env) tokens/s and microseconds per token, the env's own cost per
    token (``env.step`` alone) and, with ``with_generate``, HF ``generate``'s tokens/s and our ratio.
    """
    tokenizer = fixture.tokenizer()
    model = fixture.model(size).to(device)
    print(
        f"size={size} device={device} sampler={sampler} threads={torch.get_num_threads()} clock={_clock_name()}"
    )
    header = f"{'batch':>5} {'new':>4} {'tokens/s':>10} {'us/token':>9} {'env us/token':>12}"
    print(header + (f" {'generate tok/s':>14} {'ratio':>6}" if with_generate else ""))
    last_tps = 0.0
    for batch in SCALING_BATCHES:
        for new_tokens in SCALING_NEW_TOKENS:
            rollout = EnvRollout(model, tokenizer, batch, new_tokens, device, sampler)
            rollout.run(seed=0)
            best = min(_timed(lambda r=r, x=rollout: x.run(seed=r), device)[0] for r in range(repeats))
            last_tps = batch * new_tokens / best
            env_us = 1e6 * env_only(rollout, repeats) / batch
            line = f"{batch:>5} {new_tokens:>4} {last_tps:>10.1f} {1e6 / last_tps:>9.1f} {env_us:>12.2f}"
            if with_generate:
                hf = GenerateRollout(model, tokenizer, batch, new_tokens, device)
                hf_tps = batch * new_tokens / min(_timed(hf.run, device)[0] for _ in range(repeats))
                line += f" {hf_tps:>14.1f} {last_tps / hf_tps:>6.2f}"
            print(line, flush=True)
    print(f"tokens_per_s {last_tps:.1f}")


def _clock_name() -> str:
    return next(name for name, fn in CLOCKS.items() if fn is clock)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(fixture.SIZES), default="tiny")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--sampler", choices=sorted(SAMPLERS), default="cdf")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best counts")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall", help="cpu: process CPU time (use with --threads 1)"
    )
    parser.add_argument(
        "--textrl",
        metavar="PYTHON",
        help="also run shared/peers/textrl_rollout.py with this interpreter (e.g. /tmp/textenv-peers/bin/python)",
    )
    parser.add_argument("--bf16", action="store_true", help="run the model in bfloat16 (both rollouts)")
    parser.add_argument("--scaling", action="store_true", help="tokens/s over batch 1..256 and N 16..512")
    parser.add_argument(
        "--with-generate", action="store_true", help="--scaling: also time HF generate per cell"
    )
    args = parser.parse_args(argv)
    if args.batch < 1 or args.new_tokens < 1 or args.repeats < 1:
        parser.error("--batch, --new-tokens and --repeats must be >= 1")
    torch.set_num_threads(args.threads)
    global clock
    clock = CLOCKS[args.clock]
    torch.manual_seed(0)
    device = resolve_device(args.device)
    if args.scaling:
        scaling(args.size, device, args.sampler, args.repeats, args.with_generate)
    else:
        dtype = torch.bfloat16 if args.bf16 else torch.float32
        compare(
            args.size, args.batch, args.new_tokens, device, args.sampler, args.repeats, args.textrl, dtype
        )


if __name__ == "__main__":
    main()
