"""Past one process: the launch, the process group, the data split, the strategies and the collectives the guard
agrees through. Built on torch.distributed (torchrun / `accelerate launch` start the processes) and FSDP2.

    world = init_world(cfg)            # from torchrun's / accelerate's environment; World() when single-process
    units = shard(step_units, world)   # this rank's contiguous share of the step
    model, params = wrap(model, world) # ddp: replicated, params broadcast; fsdp: fully_shard per decoder layer
    ...micro-batches, in lockstep through `rounds`...
    loss_sum = reduce_step(world, params, loss_sum)   # ddp: one all-reduce of every LoRA gradient + the loss

Strategies (dist.strategy):
  ddp   every rank holds the whole 4-bit model and the LoRA weights and optimizer state (replicated). Gradients are
        summed by one `all_reduce` of a flat buffer per step, after the step's last micro-batch, not in backward hooks
        as torch's DistributedDataParallel does: its bucketed all-reduce fires during a backward, so a rank that runs
        out of memory half-way through a backward would leave the others waiting inside a collective, and a rank
        whose guard re-split its step would run more backward passes (more all-reduces) than the others. With the
        reduction at the step's end, forward and backward hold no collective, and every OOM is recoverable in place.
  fsdp  torch FSDP2 (`fully_shard`) on each decoder layer and the root: the frozen 4-bit weights (stored in the
        compute dtype, bnb_4bit_quant_storage, so they shard like any tensor), the norms, the embedding, and the LoRA
        weights, gradients and optimizer state are all sharded over the ranks; each layer is all-gathered for its
        forward and again for its backward, and LoRA gradients are reduce-scattered after each backward.

The guard across ranks (`rounds`): after every micro-batch attempt, each rank's (out of memory?, samples in the
micro-batch, samples left) goes to every rank in one small all-gather on the host (a gloo group, so it never waits on
the GPU stream). If any rank ran out of memory, all ranks take the same rung (halve, checkpointing, offload) at once,
the failed ranks undo their micro-batch, and the round is repeated; micro-batch sizes and checkpointing stay the same
on every rank. Under fsdp every round is one forward and one backward on every rank (a rank with nothing left runs a
sample whose every label is ignored: its gradient is zero), because each forward and backward holds all-gathers.
What fsdp cannot recover: an OOM *inside* the model's forward or backward (the other ranks are then inside that
layer's all-gather, waiting for a rank that left it); that rank stops the run with a message (see `fsdp_oom_message`).
"""

import dataclasses
import datetime
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from qlorafit.core import options as O
from qlorafit.errors import UserError

LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # set by torchrun, and so by `accelerate launch` (which runs it)


@dataclass
class World:
    """This process's place among the ranks. World() is the single-process run: every collective is the identity."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    strategy: str = "none"          # none | ddp | fsdp
    ctrl: object = field(default=None, repr=False)   # host-side (gloo) group for flags and objects
    mesh: object = field(default=None, repr=False)   # fsdp's DeviceMesh

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched_world_size(env=os.environ) -> int:
    """WORLD_SIZE from a torchrun / accelerate launch; 1 otherwise.

    >>> launched_world_size({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    2
    >>> launched_world_size({})
    1
    """
    if not all(v in env for v in LAUNCH_VARS):
        return 1
    return int(env["WORLD_SIZE"])


def init_world(cuda: bool, env=os.environ, timeout_minutes: int = 30) -> World:
    """Join the process group torchrun started (World() without one). The strategy is set once the model's estimate
    is known (pick_strategy); fsdp's device mesh is made when the model is wrapped."""
    size = launched_world_size(env)
    if size == 1:
        return World()
    rank, local = int(env["RANK"]), int(env["LOCAL_RANK"])
    if cuda:
        if local >= torch.cuda.device_count():
            raise UserError(f"rank {rank}: LOCAL_RANK {local} but only {torch.cuda.device_count()} GPU(s) visible; "
                            f"launch at most that many processes per node")
        torch.cuda.set_device(local)  # before the group: NCCL binds each rank to its own GPU
    if not dist.is_initialized():
        # NCCL for GPU tensors, gloo for CPU ones: FSDP2 with cpu_offload reduces and clips host-resident gradients, which
        # an NCCL-only group refuses ("No backend type associated with device type cpu", seen on the 2 x H200 run)
        backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    ctrl = dist.new_group(backend="gloo") if cuda else dist.group.WORLD  # flags on the host, never a GPU sync
    return World(rank, size, local, "ddp", ctrl)


def close(world: World) -> None:
    if world.active and dist.is_initialized():
        dist.destroy_process_group()


# --- the data split -------------------------------------------------------------------------------------------------

def shard(units: list, world: World, per_rank: int) -> list:
    """This rank's contiguous share of a step's units: rank r trains units[r*per_rank : (r+1)*per_rank]. Contiguous
    keeps the length grouping of the epoch order (one micro-batch's samples have similar lengths). A short last step
    gives later ranks fewer units, or none.

    >>> shard(list(range(10)), World(rank=1, size=2), 4)
    [4, 5, 6, 7]
    >>> shard(list(range(10)), World(rank=1, size=2), 8)
    [8, 9]
    """
    if not world.active:
        return units
    return units[world.rank * per_rank: (world.rank + 1) * per_rank]


# --- host-side agreement --------------------------------------------------------------------------------------------

def gather_ints(world: World, values: list[int]) -> list[list[int]]:
    """Every rank's `values`, indexed by rank (one small all-gather on the host group)."""
    if not world.active:
        return [list(values)]
    mine = torch.tensor(values, dtype=torch.int64)
    out = [torch.empty_like(mine) for _ in range(world.size)]
    dist.all_gather(out, mine, group=world.ctrl)
    return [t.tolist() for t in out]


def agree_sum(world: World, values: list[int]) -> list[int]:
    """Element-wise sum over the ranks.

    >>> agree_sum(World(), [3, 0])
    [3, 0]
    """
    rows = gather_ints(world, values)
    return [sum(col) for col in zip(*rows)]


def agree_max(world: World, value: int) -> int:
    return max(row[0] for row in gather_ints(world, [value]))


def sum_scalars(world: World, loss_sum: torch.Tensor, count: int) -> tuple[torch.Tensor, int]:
    """(a device scalar, an int) summed over the ranks: the evaluation's loss and token count."""
    if not world.active:
        return loss_sum, count
    both = torch.stack([loss_sum.float(), torch.tensor(float(count), device=loss_sum.device)])
    dist.all_reduce(both)
    return both[0], int(both[1].item())


def gather_objects(world: World, obj) -> list:
    if not world.active:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj, group=world.ctrl)
    return out


def barrier(world: World) -> None:
    if world.active:
        dist.barrier(group=world.ctrl)


# --- gradients and the step's loss ------------------------------------------------------------------------------------

def reduce_step(world: World, params: list, loss_sum: torch.Tensor) -> torch.Tensor:
    """After the step's last micro-batch: the global gradient and loss sum on every rank.

    ddp: each rank's gradients are partial sums over its samples, each already divided by the step's global target
    count, so the global gradient is their plain sum: one all-reduce of one flat buffer holding every LoRA gradient and
    the loss (a copy of the LoRA gradients, a few MB, for one collective instead of one per tensor).
    fsdp: FSDP has reduce-scattered the gradients in each backward (see loss_divisor); only the loss is left.
    """
    if not world.active:
        return loss_sum
    if world.strategy == "fsdp":
        loss = loss_sum.detach().clone()
        dist.all_reduce(loss)
        return loss
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads] + [loss_sum.reshape(1).float()])  # (n_lora + 1,)
    dist.all_reduce(flat)
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset: offset + n].view_as(g).to(g.dtype)
        offset += n
    return flat[-1]


def loss_divisor(world: World, total_targets: int) -> float:
    """What each micro-batch's loss sum is divided by. ddp (summed by reduce_step) and single: the step's global
    target count. fsdp: FSDP's reduce-scatter averages over the ranks (gloo has no pre-scaled sum to turn that off),
    so the count divided by the number of ranks.

    >>> loss_divisor(World(), 120), loss_divisor(World(size=2, strategy="fsdp"), 120)
    (120, 60.0)
    """
    n = max(total_targets, 1)
    return n / world.size if world.strategy == "fsdp" else n


def local_value(t: torch.Tensor) -> torch.Tensor:
    """A plain tensor from a replicated DTensor (FSDP's clip_grad_norm_ returns one)."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


# --- wrapping the model -----------------------------------------------------------------------------------------------

def _base(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def decoder_layers(model) -> list:
    base = _base(model)
    layers = getattr(getattr(base, "model", base), "layers", None)
    if layers is None:
        raise UserError("dist.strategy=fsdp: no decoder layers found (model.model.layers); use dist.strategy=ddp")
    return list(layers)


def wrap(model, world: World, cpu_offload: bool = False):
    """Prepare the loaded PEFT model for the strategy; returns (model, trainable params) to build the optimizer on.

    ddp: the LoRA weights are broadcast from rank 0 (the seeds already agree; this makes it a guarantee, also for a
    lora.resume_adapter read at slightly different times).
    fsdp: fully_shard each decoder layer (resharded after its forward: a layer's full weights live only during its own
    forward and its backward), then the decoder stack (its embedding and final norm) as the root unit, kept gathered
    from its forward to the end of the backward. lm_head stays outside FSDP, whole on every rank (+vocab x hidden x 2
    bytes per GPU, 2.1 GB on a 70B): qlorafit's loss calls the decoder stack, then reads lm_head's weight in slices
    itself, never through lm_head's forward, where FSDP would gather it. It is frozen, so it needs no gradient sync;
    with dist.cpu_offload it stays in host RAM and the loss streams it. FSDP averages gradients over the ranks; the
    step divides each loss by (global target count / ranks) to make that average the exact sum (`loss_divisor`).
    """
    if world.strategy == "ddp":
        for p in model.parameters():
            if p.requires_grad:
                dist.broadcast(p.data, src=0)
    elif world.strategy == "fsdp":
        from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

        policy = CPUOffloadPolicy() if cpu_offload else OffloadPolicy()
        base = _base(model)
        for layer in decoder_layers(model):
            fully_shard(layer, mesh=world.mesh, offload_policy=policy)
        fully_shard(base.model, mesh=world.mesh, offload_policy=policy, reshard_after_forward=False)
        head, cuda = base.get_output_embeddings(), world.mesh.device_type == "cuda"
        tied = head is not None and head.weight is base.get_input_embeddings().weight
        if head is not None and cuda and cpu_offload and not tied:
            from qlorafit.runtime.offload import offload_lm_head
            offload_lm_head(model, torch.device("cuda", torch.cuda.current_device()))  # pinned, streamed by the loss
        elif head is not None and cuda:
            head.to(torch.device("cuda", torch.cuda.current_device()))
    return model, [p for p in model.parameters() if p.requires_grad]


def fsdp_oom_message(rank: int, phase: str) -> str:
    return (f"rank {rank} ran out of GPU memory inside the model's {phase} under dist.strategy=fsdp. The other ranks "
            f"are waiting in that layer's all-gather, so the step cannot be re-split in place (an OOM before or "
            f"between micro-batches is). Size the run with `qlorafit estimate MODEL --gpus N --strategy fsdp`: lower "
            f"train.micro_batch_size or data.max_seq_length, set train.grad_checkpointing=on, or dist.cpu_offload=true; "
            f"then rerun with --resume.")


def pick_strategy(requested: str, fits_one_gpu: bool | None, env=os.environ) -> str:
    """dist.strategy=auto: fsdp when `accelerate launch` was configured for FSDP (ACCELERATE_USE_FSDP), else ddp when
    the whole model trains on one GPU (fastest: no per-layer all-gathers), fsdp when it does not; ddp when the fit is
    unknown (no estimate). DeepSpeed launches are refused: qlorafit runs on torch's own DDP / FSDP2.

    >>> pick_strategy("auto", False, {}), pick_strategy("auto", True, {}), pick_strategy("fsdp", True, {})
    ('fsdp', 'ddp', 'fsdp')
    >>> pick_strategy("auto", True, {"ACCELERATE_USE_FSDP": "true"})
    'fsdp'
    """
    if env.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true"):
        raise UserError("accelerate launch with DeepSpeed: qlorafit shards with torch FSDP2 instead; launch without "
                        "the DeepSpeed config and set dist.strategy=fsdp (ZeRO-3 ~ fsdp, ZeRO-Offload ~ "
                        "dist.cpu_offload)")
    if requested != "auto":
        return requested
    if env.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        return "fsdp"
    return "fsdp" if fits_one_gpu is False else "ddp"


def fsdp_problems(cfg) -> list[str]:
    """Settings fsdp does not combine with, each with what to do instead."""
    p = []
    if O.quant(cfg.model.quant).bits not in (4, 16):
        p.append(f"model.quant={cfg.model.quant}: fsdp shards 4-bit (nf4/fp4) or 16-bit weights only")
    if cfg.model.offload_lm_head:
        p.append("model.offload_lm_head: under fsdp lm_head stays whole on each GPU; set it to false "
                 "(dist.cpu_offload=true keeps it, and every shard, in host RAM)")
    if not O.optimizer(cfg.train.optimizer).shardable:
        p.append(f"train.optimizer={cfg.train.optimizer}: bitsandbytes optimizers do not take FSDP's sharded "
                 f"(DTensor) parameters; use {O.shardable_optimizer()} (its state is sharded: 8 bytes per LoRA "
                 f"parameter / N)")
    if "lm_head" in cfg.lora.targets or "lm_head" in cfg.lora.modules_to_save:
        p.append("lora.targets / lora.modules_to_save: lm_head stays outside FSDP (whole on every rank) and must be "
                 "frozen; drop it")
    return p


def load_and_wrap(cfg, model_path: str, device: torch.device, world: World, adapter: dict | None = None):
    """Load the 4-bit model and LoRA, put in a checkpoint's adapter (`adapter`, its state dict; before sharding, as
    plain tensors), wrap for the strategy. Returns (Loaded, trainable params).

    fsdp loads one rank at a time: rank r reads and quantizes the model into host RAM, shards it (fully_shard keeps
    1/N of every tensor and moves it to the GPU, one layer at a time), and only then does rank r+1 start. Host RAM so
    holds one 4-bit copy at a time instead of N (70B: ~37 GiB once, not 37 x N), for N sequential loads.
    """
    from peft import set_peft_model_state_dict

    from qlorafit.runtime.model import load_model, resolve_compute_dtype

    if world.strategy != "fsdp":
        loaded = load_model(cfg, model_path, device)
        if adapter is not None:
            set_peft_model_state_dict(loaded.model, adapter)
        loaded.model, params = wrap(loaded.model, world)
        return loaded, params
    problems = fsdp_problems(cfg)
    if problems:
        raise UserError("dist.strategy=fsdp:\n  " + "\n  ".join(problems))
    from torch.distributed.device_mesh import init_device_mesh

    world.mesh = init_device_mesh(device.type, (world.size,))
    storage = resolve_compute_dtype(cfg.model.compute_dtype, device)  # 4-bit bytes stored as bf16: one dtype to shard
    # the embedding is sharded by FSDP (its host-RAM lever does not apply) and layers are not compiled under fsdp yet
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, offload_embedding=False),
                              train=dataclasses.replace(cfg.train, compile=False))
    loaded = None
    for r in range(world.size):
        if r == world.rank:
            loaded = load_model(cfg, model_path, torch.device("cpu"), quant_storage=storage)
            if adapter is not None:
                set_peft_model_state_dict(loaded.model, adapter)
            loaded.model, params = wrap(loaded.model, world, cfg.dist.cpu_offload)
            loaded.device = device
        barrier(world)
    return loaded, params


def shard_optimizer_state(optimizer) -> None:
    """After loading a checkpoint's full optimizer state under fsdp: keep each rank's shard of every tensor shaped
    like its (sharded) parameter, as FSDP's parameters are. Sliced locally: no communication."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    for group in optimizer.param_groups:
        for p in group["params"]:
            if not isinstance(p, DTensor):
                continue
            st = optimizer.state.get(p, {})
            for k, v in st.items():
                if isinstance(v, torch.Tensor) and not isinstance(v, DTensor) and v.shape == p.shape:
                    st[k] = distribute_tensor(v.to(p.to_local().device), p.device_mesh, p.placements,
                                              src_data_rank=None)
