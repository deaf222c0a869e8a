"""Data-parallel training on Accelerate: one process per device, gradients reduced by DDP.

Launched by ``accelerate launch --num_processes N -m agents.train ...`` or ``torchrun --nproc_per_node N
-m agents.train ...`` (which set ``WORLD_SIZE``), every process builds the same algorithm and

- steps its own env rows with its own seed stream: process ``r`` seeds its envs, prompt draws and
  sampling with ``seed + r * num_envs`` (its rows continue the row seeds of the processes before it);
- trains its own rollout of ``episodes_per_iteration`` episodes: the global batch is the sum over the
  processes. The training forwards run through ``accelerator.prepare``'s DDP wrapper and every loss
  through ``accelerator.backward``, so the gradients are averaged across processes before each step;
- reduces its logged metrics (mean over processes) and hands the global mean KL to the KL controller,
  so every process keeps the same coefficient;
- only the main process writes logs, plots and checkpoints; a checkpoint carries every process's RNG
  states, so a run resumes exactly with the same number of processes.

Without a launcher (``WORLD_SIZE`` unset or 1) no ``Accelerator`` is made and nothing here costs anything:
:class:`Distributed` is a single-process no-op.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn


def launched_world_size() -> int:
    """Processes of the launch this process belongs to (``WORLD_SIZE``; 1 without a launcher)."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


class Distributed:
    """The process group an algorithm trains in: an ``accelerate.Accelerator`` when launched with several
    processes, else a single-process stand-in with the same methods (no-ops).

    Args:
        device: The config's device spec (``"cpu"`` forces CPU processes with the gloo backend, also on
            a machine with GPUs).
    """

    def __init__(self, device: str) -> None:
        self.accelerator: Any = None
        if launched_world_size() > 1:
            try:
                from accelerate import Accelerator
            except ImportError as err:
                raise ImportError(
                    "multi-process training needs accelerate: pip install 'textenv[accelerate]'"
                ) from err
            cpu = device == "cpu" or not torch.cuda.is_available()
            self.accelerator = Accelerator(cpu=cpu)

    @property
    def enabled(self) -> bool:
        """Whether several processes train together."""
        return self.accelerator is not None and self.accelerator.num_processes > 1

    @property
    def rank(self) -> int:
        """This process's index (0 = the main process)."""
        return int(self.accelerator.process_index) if self.accelerator is not None else 0

    @property
    def world_size(self) -> int:
        """Number of processes."""
        return int(self.accelerator.num_processes) if self.accelerator is not None else 1

    @property
    def is_main(self) -> bool:
        """Whether this is the process that writes logs, plots and checkpoints."""
        return self.rank == 0

    @property
    def device(self) -> torch.device | None:
        """The device Accelerate assigned to this process (``None`` single-process: the config decides)."""
        if self.accelerator is None:
            return None
        device = self.accelerator.device
        return torch.device("cpu") if device.type == "cpu" else device  # gloo processes say "cpu:0"

    def prepare(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[nn.Module, Any]:
        """``(training forward module, optimizer)``: DDP-wrapped by Accelerate, or the inputs unchanged."""
        if self.accelerator is None:
            return model, optimizer
        return self.accelerator.prepare(model, optimizer)

    def backward(self, loss: torch.Tensor) -> None:
        """``accelerator.backward`` (gradients averaged across processes), else ``loss.backward()``."""
        if self.accelerator is None:
            loss.backward()
        else:
            self.accelerator.backward(loss)

    def clip_grad_norm(self, params: list[nn.Parameter], max_norm: float) -> float:
        """Clips the (already reduced) gradients to ``max_norm``; returns the norm before clipping."""
        clip = (
            torch.nn.utils.clip_grad_norm_ if self.accelerator is None else self.accelerator.clip_grad_norm_
        )
        return float(clip(params, max_norm))

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean of every value over the processes (one all-reduce for the whole dict)."""
        if not self.enabled or not values:
            return values
        keys = sorted(values)
        device = self.accelerator.device
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
        t = self.accelerator.reduce(t, reduction="mean")
        return {k: float(v) for k, v in zip(keys, t.tolist())}

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every process's ``obj`` (picklable; our own processes), in rank order; ``[obj]`` single-process."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def wait(self) -> None:
        """Barrier: every process waits for the others (e.g. until the main process wrote a checkpoint)."""
        if self.enabled:
            self.accelerator.wait_for_everyone()


__all__ = ["Distributed", "launched_world_size"]
