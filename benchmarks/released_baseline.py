r"""A faithful stand-in for the released γ-PO code's per-step calibration: the baseline of every benchmark.

The released trainers (``docs/theory/mirror-descent.md`` and the released-code quirks on ``docs/comparison.md``) calibrate
the margins every step like this, and so does :func:`released_calibrate`:

1. **device → host copy**: the current gaps are read back with ``.tolist()`` (one synchronisation
   with the device every step);
2. **host-side sampling**: ``S = min(len(queue), max(sample_size − n, 0))`` stored gaps are drawn
   without replacement with Python's :func:`random.sample` from a Python ``list`` queue;
3. **host → device copy**: the sampled floats become a tensor (``torch.tensor(sampled)``) on the
   gaps' device, concatenated in front of the current gaps: ``[sampled, h]`` (M = S + n);
4. **mirror descent as a Python loop of small tensor ops**, K = 20 iterations, in the gaps' own dtype
   (the released code keeps the model's dtype), normalising in the *linear* domain:

   .. math::

       \gamma = \gamma_0 M p,\quad
       g_i = \tau\,(1 + \log(M (p_i + \epsilon))) + \gamma_0\,\sigma(\gamma_i - h_i),\quad
       p \leftarrow \frac{p \odot e^{-\eta g}}{\sum_j p_j e^{-\eta g_j}},

   with :math:`p = 1/M` at the start, :math:`\eta = \min(0.5/\tau, 1)`, :math:`\epsilon = 10^{-10}`.
   All K updates run (the last one is wasted work, as in the released code) and the γ computed at the
   start of the last iteration is returned: K − 1 effective updates;
5. the margins of the current gaps (the last n) are kept and the host copy of the gaps is appended
   to the queue (FIFO, capacity 2048: the oldest entries are dropped).

What is left out, each in the baseline's favour: the released code also ``print``\ s the gaps every
step and keeps one queue per rank (no gather; irrelevant on one process).

Batch mode (``queue=None``) is step 4 alone on the current gaps: no host traffic (the released
batch-mode path needs none). With float64 gaps the margins equal :func:`gammapo_spec.calibration.
mirror_margins` to rounding (the spec normalises in the log domain; tests/torch checks ≤ 1e-12).

Example:
    >>> import random, torch
    >>> from benchmarks.released_baseline import released_calibrate, released_init_queue
    >>> rng = random.Random(0)
    >>> queue = released_init_queue(rng=rng)              # 8 standard-normal draws, like the release
    >>> gamma = released_calibrate(torch.tensor([2.0, 0.5, -1.0]), queue, gamma0=1.0, tau=1.0, rng=rng)
    >>> gamma.shape, len(queue)
    (torch.Size([3]), 11)
"""

from __future__ import annotations

import random
from typing import Any

import torch

__all__ = [
    "RELEASED_EPS",
    "RELEASED_ITERS",
    "RELEASED_QUEUE_CAPACITY",
    "RELEASED_SAMPLE_SIZE",
    "RELEASED_WARMUP",
    "released_mirror",
    "released_init_queue",
    "released_calibrate",
]

#: The ε inside the log of the released mirror-descent gradient.
RELEASED_EPS = 1e-10
#: Mirror iterations per step in the released code.
RELEASED_ITERS = 20
#: Capacity of the released FIFO queue of recent gaps.
RELEASED_QUEUE_CAPACITY = 2048
#: Size of the calibration set the released code aims for (sampled + current gaps).
RELEASED_SAMPLE_SIZE = 256
#: Standard-normal draws the released queue starts with.
RELEASED_WARMUP = 8


def released_mirror(h: torch.Tensor, *, gamma0: float, tau: float, iters: int = RELEASED_ITERS) -> torch.Tensor:
    r"""The released mirror descent on ``h`` (step 4 of the module docstring), in ``h``'s dtype and device.

    A Python loop of about a dozen small tensor ops per iteration (one kernel launch each on a GPU);
    nothing is read back to the host.

    Args:
        h: ``[M]`` gaps (detached inside).
        gamma0: γ0, the mean margin.
        tau: τ > 0, the entropy weight.
        iters: K, the number of iterations (K updates of p, the γ of the last iteration's start).

    Returns:
        ``[M]`` margins γ = γ0 · M · p.

    Example:
        >>> import torch
        >>> g = released_mirror(torch.tensor([2.0, 0.5, -1.0], dtype=torch.float64), gamma0=1.0, tau=1.0)
        >>> [round(v, 4) for v in g.tolist()]
        [1.2806, 0.9621, 0.7573]
    """
    h = h.detach()
    m = h.shape[0]
    eta = min(0.5 / tau, 1.0)
    p = torch.ones_like(h) / m
    gamma = gamma0 * m * p
    for _ in range(iters):
        gamma = gamma0 * m * p
        grad = tau * (1.0 + torch.log(m * (p + RELEASED_EPS))) + gamma0 * torch.sigmoid(gamma - h)
        p = p * torch.exp(-eta * grad)
        p = p / p.sum()
    return gamma


def released_init_queue(warmup: int = RELEASED_WARMUP, *, rng: Any = random) -> list[float]:
    """A new released-style queue: a Python list of ``warmup`` standard-normal draws (``rng.gauss``)."""
    return [rng.gauss(0.0, 1.0) for _ in range(warmup)]


def released_calibrate(
    h: torch.Tensor,
    queue: list[float] | None,
    *,
    gamma0: float,
    tau: float,
    iters: int = RELEASED_ITERS,
    sample_size: int = RELEASED_SAMPLE_SIZE,
    capacity: int = RELEASED_QUEUE_CAPACITY,
    rng: Any = random,
) -> torch.Tensor:
    r"""One released-style calibration step: margins for the current gaps ``h``; updates ``queue`` in place.

    Per call, in queue mode (``queue`` a list), exactly this crosses the host/device boundary:
    ``h.detach().tolist()`` (one device → host copy and synchronisation), ``rng.sample(queue, S)`` on
    the host, ``torch.tensor(sampled, dtype=h.dtype, device=h.device)`` (one host → device copy), then
    K iterations of :func:`released_mirror` on ``[sampled, h]`` and ``queue.extend`` of the host copy
    (oldest entries beyond ``capacity`` deleted). ``S = min(len(queue), max(sample_size − n, 0))``.
    With ``queue=None`` (batch mode) it is :func:`released_mirror` on ``h`` alone, with no host traffic.

    Args:
        h: ``[n]`` current gaps (any float dtype; the calibration runs in it).
        queue: the Python list of recent gaps (mutated), or ``None`` for batch mode.
        gamma0, tau, iters: as :func:`released_mirror`.
        sample_size: the calibration set's target size (released: 256).
        capacity: the queue's capacity (released: 2048).
        rng: anything with ``sample`` (default: the ``random`` module, as released).

    Returns:
        ``[n]`` margins of the current gaps, in ``h``'s dtype and device.

    Example:
        >>> import random, torch
        >>> queue = [0.1, -0.3, 1.2, 0.7]
        >>> g = released_calibrate(torch.tensor([1.0, 2.0]), queue, gamma0=1.0, tau=5.0, sample_size=4,
        ...                        rng=random.Random(1))
        >>> g.shape, queue[-2:]
        (torch.Size([2]), [1.0, 2.0])
    """
    h = h.detach()
    if queue is None:
        return released_mirror(h, gamma0=gamma0, tau=tau, iters=iters)
    n = h.shape[0]
    h_host = h.tolist()  # device → host copy: a synchronisation every step
    count = min(len(queue), max(sample_size - n, 0))
    sampled = rng.sample(queue, count)  # host-side sampling without replacement
    calib = torch.cat([torch.tensor(sampled, dtype=h.dtype, device=h.device), h])  # host → device copy
    gamma = released_mirror(calib, gamma0=gamma0, tau=tau, iters=iters)[count:]
    queue.extend(h_host)
    if len(queue) > capacity:
        del queue[: len(queue) - capacity]
    return gamma
