"""
torch.distributed in a few lines. Under torchrun (RANK and WORLD_SIZE set) every process joins a group
(NCCL on CUDA, gloo on CPU); as a plain `python script.py` the same calls are no-ops with rank 0 of 1.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self):
        return self.rank == 0

    @property
    def enabled(self):
        return self.world > 1


def setup(device):
    """Join the process group when launched by torchrun; returns (Dist, device for this rank)."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return Dist(), device
    rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    torch_dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local), device


def cleanup(dist):
    if dist.enabled:
        torch_dist.barrier()
        torch_dist.destroy_process_group()


def gather_lists(dist, shard, n):
    """Rank r holds the results for items r, r+world, r+2*world, ... of a list of n items; every rank gets
    the whole list back in the original order (what one process would have built)."""
    if not dist.enabled:
        return list(shard)
    parts = [None] * dist.world
    torch_dist.all_gather_object(parts, list(shard))
    out = [None] * n
    for r, part in enumerate(parts):
        out[r::dist.world] = part
    return out


def all_reduce_sum(dist, tensor):
    if dist.enabled:
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
    return tensor
