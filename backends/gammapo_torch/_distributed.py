r"""Data-parallel calibration: gather every rank's gaps so all ranks calibrate on the global batch.

Semantics (shared by every gammapo backend): when ``torch.distributed`` is initialised with more than
one rank in the process group, :func:`gather_gaps` all-gathers the *detached* gaps of every rank, in
rank order, into the global calibration set ``[h_rank0, h_rank1, …]``. Every rank then runs the same
calibration on the same numbers, so it computes the same margins for every pair, and keeps the
slice of its own pairs (:func:`local_slice`). In queue mode every rank pushes the same global gaps,
so the queues stay identical on every rank (the released code keeps one diverging queue per rank).
The result equals a single process run on the concatenated batch. No gradient flows through the
gather (margins are constants for the gradient), so the backward pass has no collective; the loss
on each rank is the mean over its own pairs, and DDP's gradient averaging makes it the global mean.

Unequal per-rank batch sizes are not supported: every rank must pass the same number of pairs
(``all_gather`` needs equal shapes, and the slice of rank r is ``[r·n, (r+1)·n)``). With
``config.check_values`` on (eager only) the sizes are all-gathered first (a second small collective
and a host sync) and a mismatch raises :class:`~gammapo_spec.errors.InputError` naming the sizes on
every rank; with it off, or under ``torch.compile``, the collective itself fails (or, for backends
that do not check, misbehaves), so pad to equal sizes or keep the checks on while developing.

The gather uses ``torch.distributed._functional_collectives.all_gather_single`` (``all_gather_tensor``
before torch 2.13), which is traceable:
a compiled step keeps the collective in its graph. ``process_group`` selects a sub-group (default:
the world group).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from gammapo_spec.errors import InputError

__all__ = ["world", "gather_gaps", "local_slice"]


def world(process_group: Any = None) -> tuple[int, int]:
    """``(rank, world_size)`` in ``process_group``; ``(0, 1)`` when ``torch.distributed`` is not initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(process_group), dist.get_world_size(process_group)


def _check_equal_sizes(n: int, world_size: int, device: torch.device, process_group: Any) -> None:
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world_size)]
    dist.all_gather(sizes, torch.tensor([n], dtype=torch.int64, device=device), group=process_group)
    sizes_host = [int(s) for s in torch.cat(sizes).tolist()]
    if any(s != n for s in sizes_host):
        raise InputError(
            f"every rank needs the same number of pairs for the gathered calibration; got {sizes_host} "
            "pairs on ranks 0..{}".format(world_size - 1),
            field="chosen_logps",
        )


def gather_gaps(h: torch.Tensor, *, check_sizes: bool, process_group: Any = None) -> torch.Tensor:
    """All ranks' detached gaps in rank order (``h`` itself, detached, on a single process).

    Args:
        h: ``[n]`` this rank's gaps.
        check_sizes: all-gather the sizes first and raise on a mismatch (eager only; a host sync).
        process_group: the group to gather over (default: world).

    Returns:
        ``[world_size · n]`` gaps.

    Raises:
        InputError: with ``check_sizes``, ranks with different batch sizes.
    """
    rank, world_size = world(process_group)
    h = h.detach()
    if world_size == 1:
        return h
    if check_sizes and not torch.compiler.is_compiling():
        _check_equal_sizes(h.shape[0], world_size, h.device, process_group)
    from torch.distributed import _functional_collectives as funcol

    group = process_group if process_group is not None else dist.group.WORLD
    # all_gather_single (torch >= 2.13) replaces the deprecated all_gather_tensor; same semantics
    gather = getattr(funcol, "all_gather_single", None) or funcol.all_gather_tensor
    gathered = gather(h.contiguous(), gather_dim=0, group=group)
    return funcol.wait_tensor(gathered) if isinstance(gathered, torch.Tensor) else gathered


def local_slice(values: torch.Tensor, n: int, process_group: Any = None) -> torch.Tensor:
    """This rank's ``n`` entries of a gathered ``[world_size · n]`` tensor."""
    rank, world_size = world(process_group)
    if world_size == 1:
        return values
    return values[rank * n : (rank + 1) * n]
