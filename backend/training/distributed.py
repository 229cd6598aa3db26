"""Data-parallel training inside processes started by torchrun or `accelerate launch`.

`Parallel` holds everything that differs between one process, DDP and FSDP; the trainer calls its
methods and nothing else. With one process every method is a no-op, so the single-process loop runs
exactly as before (no wrapper, no collectives).

The global batch: `batch_size` counts examples per optimizer step over all processes. The run's
micro-batches are the single-process ones (same seed, same order); each rank takes the strided
share `batch[rank::world]` of every micro-batch (DistributedSampler's split), so N processes see
the same examples at the same step as one process would. The loss is the mean over all answer
tokens of the step: each rank divides its summed loss by the global answer-token count (all-reduced
first) times world size, because DDP and FSDP average gradients over ranks.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from peft import get_peft_model_state_dict
from torch.nn.parallel import DistributedDataParallel as DDP

from backend.errors import InvalidRequest


class LossModule(torch.nn.Module):
    """The model and its answer-only loss as one module, so DDP/FSDP see every forward pass (the
    loss calls the decoder directly, not the peft model's own forward)."""

    def __init__(self, model: torch.nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(ids, labels)


def launched() -> bool:
    """True inside a process started by a launcher (ours, torchrun or accelerate)."""
    return bool(os.environ.get("TUNEBRIDGE_LAUNCHED")) or "WORLD_SIZE" in os.environ


KEEP_ALIVE: list[Any] = []  # see Parallel.close


@dataclass
class Parallel:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    strategy: str = "ddp"  # "ddp" | "fsdp"
    module: Any = field(default=None, repr=False)  # the DDP/FSDP wrapper once wrap() ran

    @classmethod
    def from_env(cls, strategy: str = "ddp") -> Parallel:
        env = os.environ
        world = int(env.get("WORLD_SIZE", "1"))
        return cls(rank=int(env.get("RANK", "0")), world=world, local_rank=int(env.get("LOCAL_RANK", "0")),
                   local_world=int(env.get("LOCAL_WORLD_SIZE", str(world))), strategy=strategy)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def fsdp(self) -> bool:
        return self.enabled and self.strategy == "fsdp"

    def describe(self) -> str:
        if not self.enabled:
            return "single process"

        return f"{self.strategy.upper()} over {self.world} processes ({dist.get_backend()})"

    def threads(self, requested: int) -> int:
        """Torch threads for this process: `requested` (0: all cores) shared among this machine's ranks."""
        if not self.enabled:
            return requested or torch.get_num_threads()
        cores = requested or len(os.sched_getaffinity(0))
        return max(1, cores // self.local_world)

    # --- set-up -------------------------------------------------------------------------------

    def setup(self, device: str, *, batch_size: int, grad_accum: int) -> None:
        """Join the process group (gloo on CPU, nccl on CUDA) and check that the global batch splits."""
        if not self.enabled:
            return
        if batch_size % (grad_accum * self.world):
            raise InvalidRequest(f"batch_size: got {batch_size}, expected a multiple of grad_accum × processes "
                             f"({grad_accum} × {self.world}): it is the global batch, split evenly over the ranks")

        if device == "cuda":
            torch.cuda.set_device(self.local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device == "cuda" else "gloo")

    def wrap(self, model: torch.nn.Module, loss_fn: Callable) -> Callable:
        """The callable `(ids, labels) -> summed loss` the loop trains with: `loss_fn` itself in one
        process, else the model and loss wrapped in DDP or FSDP."""
        if not self.enabled:
            return loss_fn
        _broadcast_trainable(model)  # every rank starts from rank 0's adapter (seeded alike anyway)
        wrapped = LossModule(model, loss_fn)
        device = next(p.device for p in model.parameters())
        if self.strategy == "fsdp":
            from peft.utils.other import fsdp_auto_wrap_policy
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

            _check_adapter_keys(model)
            # LoRA layers become their own FSDP units (uniformly trainable), decoder layers another
            # (uniformly frozen): use_orig_params=False then keeps gradients only for the adapter.
            self.module = FSDP(wrapped, auto_wrap_policy=fsdp_auto_wrap_policy(model), use_orig_params=False,
                               device_id=device if device.type == "cpu" else device.index,
                               sync_module_states=False, limit_all_gathers=True)
        else:
            head = model.get_base_model().get_output_embeddings()  # type: ignore[operator]  # torch: Tensor|Module
            unused = any(p.requires_grad for p in head.parameters())  # an adapted head: AnswerLoss bypasses it
            self.module = DDP(wrapped, device_ids=None if device.type == "cpu" else [device.index],
                              broadcast_buffers=False, init_sync=False, find_unused_parameters=unused)
        return self.module

    def trainable(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        source = self.module if self.fsdp else model  # FSDP trains its flat parameters
        return [p for p in source.parameters() if p.requires_grad]

    # --- per step -----------------------------------------------------------------------------

    def shard(self, batch: list) -> list:
        return batch if not self.enabled else batch[self.rank::self.world]

    def all_sum(self, values: list[float]) -> list[float]:
        if not self.enabled:
            return values

        t = torch.tensor(values, dtype=torch.float64, device=self._device())
        dist.all_reduce(t)
        return t.tolist()

    def agree(self, flags: list[bool]) -> list[bool]:
        """Each flag true on every rank when it is true on any (stop requests, time budget)."""
        if not self.enabled:
            return flags
        return [v > 0 for v in self.all_sum([float(f) for f in flags])]

    def no_sync(self, skip: bool):
        """Accumulate gradients locally (no all-reduce) for all but the last micro-batch of a step."""
        if skip and self.module is not None:
            return self.module.no_sync()
        return contextlib.nullcontext()

    def clip(self, params: list[torch.nn.Parameter], max_norm: float) -> float:
        limit = max_norm or float("inf")
        if self.fsdp:
            return self.module.clip_grad_norm_(limit).item()
        return torch.nn.utils.clip_grad_norm_(params, limit).item()

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self.enabled:
            return obj

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    # --- evaluation and saving ----------------------------------------------------------------

    def adapter_weights(self) -> dict[str, torch.Tensor] | None:
        """Under FSDP (a collective): the adapter's weights, keyed as in peft's adapter file, on rank 0.
        None elsewhere and without FSDP, where the peft model itself holds whole weights."""
        if not self.fsdp:
            return None
        with self._full_state_dicts(rank0_only=True):
            state = self.module.state_dict()
        if not self.main:
            return None
        return {_adapter_key(k.removeprefix("model.")): v for k, v in state.items() if "lora_" in k}

    def optimizer_state(self, optimizer) -> dict[str, Any] | None:
        """The optimizer state to checkpoint (rank 0; a collective under FSDP)."""
        if not self.fsdp:
            return optimizer.state_dict() if self.main else None
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        with self._full_state_dicts(rank0_only=True):
            state = FSDP.optim_state_dict(self.module, optimizer)
        return state if self.main else None

    def load_optimizer_state(self, optimizer, state: dict[str, Any]) -> None:
        if self.fsdp:  # every rank read the whole state from the checkpoint; each keeps its shard
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

            with self._full_state_dicts(rank0_only=False):
                state = FSDP.optim_state_dict_to_load(self.module, optimizer, state)
        optimizer.load_state_dict(state)

    def close(self) -> None:
        if self.enabled:
            # Keep the wrapped module alive until the rank exits (launch.main ends with os._exit): freeing
            # DDP's Reducer destroys the gloo process group, whose destructor joins threads that wait for
            # the GIL the freeing thread holds (seen as a hang at the end of a run under load).
            KEEP_ALIVE.append(self.module)
            if dist.is_initialized():
                dist.destroy_process_group()

    def _full_state_dicts(self, *, rank0_only: bool):
        """FSDP1's whole-state-dict API (a FutureWarning says it is being deprecated; torch's newer
        get_state_dict failed here after an evaluation pass, torch 2.13 on CPU)."""
        from torch.distributed.fsdp import FullOptimStateDictConfig, FullStateDictConfig, StateDictType
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        offload = self._device().type == "cuda"
        return FSDP.state_dict_type(self.module, StateDictType.FULL_STATE_DICT,
                                    FullStateDictConfig(offload_to_cpu=offload, rank0_only=rank0_only),
                                    FullOptimStateDictConfig(offload_to_cpu=offload, rank0_only=rank0_only))

    def _device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _broadcast_trainable(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                dist.broadcast(p.data, src=0)


def _adapter_key(key: str, adapter: str = "default") -> str:
    """A model state-dict key as peft's adapter file names it (without the adapter's name)."""
    return key.replace(f".{adapter}.", ".")


def _check_adapter_keys(model) -> None:
    """peft finds adapter keys by walking module names, which FSDP's wrappers change; adapter_weights()
    names them by rule instead. Check, before wrapping, that the rule gives peft's own names."""

    ours = {_adapter_key(k) for k in model.state_dict() if "lora_" in k}
    if ours != set(get_peft_model_state_dict(model)):
        raise InvalidRequest("strategy fsdp: this adapter's keys are not plain LoRA keys; use strategy ddp")
