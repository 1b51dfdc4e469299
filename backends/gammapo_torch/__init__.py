r"""gammapo_torch — the PyTorch backend of gammapo.

``gammapo.get_backend("torch")`` returns this module. Every op of :mod:`gammapo_spec` exists here with
the same name, keyword arguments, errors (class *and* message) and state semantics, on torch tensors,
differentiable with autograd (the calibrated margins are constants for the gradient), on CPU and
CUDA. The interoperability functions (``asarray``, ``to_numpy``, ``state_to_dict``,
``state_from_dict``, ``gamma_po_loss_and_grad``) complete the :class:`gammapo.Backend` protocol, and
:class:`GammaPOLoss` is a stateful ``nn.Module`` for training loops.

>>> import torch, gammapo
>>> B = gammapo.get_backend("torch")
>>> cfg = gammapo.GammaPOConfig(loss="gamma-simpo", queue_size=64, sample_size=16)
>>> state = B.init_state(cfg, seed=0)
>>> out, state = B.gamma_po_loss(cfg, state, chosen_logps=torch.tensor([-4.0, -8.0]),
...                              rejected_logps=torch.tensor([-9.0, -6.0]),
...                              chosen_lengths=torch.tensor([2, 4]), rejected_lengths=torch.tensor([3, 3]))
>>> out.loss.shape, out.margins.shape, int(state.step)
(torch.Size([]), torch.Size([2]), 1)

Dtype policy
------------
float64 inputs compute in float64; float32 inputs in float32; bfloat16/float16 inputs are upcast:
rewards, gaps, calibration, per-pair losses and the mean are computed in float32 and the outputs are
float32 (gradients reach each input in its own dtype). Mixed inputs promote; lengths only count as
values. The queue buffer is float32 (the default of :func:`init_state`) unless a step computes in
float64, whose new state holds a float64 buffer; create the state with ``dtype=torch.float64`` to
reproduce the float64 reference from the first step. The exact solver always computes in float64.
Tolerances asserted against the reference (``tests/torch``, relative and absolute): float64 1e-10
on margins, losses, gradients and queue states (≤ 1e-8 in the unconverged small-τ regime, τ < 1,
where 19 mirror steps with η = 1 amplify last-bit differences); float32 2e-5; bfloat16 inputs
(computed in float32) 2e-5 against the reference fed the same bf16-rounded values. The fused Triton
kernel (interpreted on CPU): float64 1e-12, float32 2e-5. Distributed runs equal one process on the
concatenated batch bit for bit. On CPU, compiled (``torch.compile``) and eager steps run the same
C++ kernel and agree bit for bit; the torch-ops path (CUDA, or the kernel off) and the kernel differ
by a few 1e-6 in float32 (vectorised exp/log and the order of sums round differently).

Speed
-----
On CPU the whole calibration step (hash sampling, the solver, the push) is by default one call of a
small C++ kernel (:mod:`gammapo_torch._cpu_calibration`: compiled once with ``g++`` in about a second,
cached in ``~/.cache/gammapo``, vectorised by the compiler), eagerly and, for the released mirror
arithmetic, as a custom operator inside ``torch.compile`` graphs. The measured figures, each against the
released code's per-step path in the same run, are in the docs' benchmarks page and
``benchmarks/results/`` (``bench_calibration_torch.py``, ``bench_step_overhead.py``). No GPU was
available to time the CUDA path or the Triton kernel.

Value checks and synchronisation
--------------------------------
Shape checks always run (they read shapes only). Value checks (non-finite inputs, non-positive
lengths) run when ``config.check_values`` is true, as one device-side reduction read back with a single
host synchronisation per call; under ``torch.compile`` they are skipped (``torch.compiler.
is_compiling()``), so the compiled step has no sync and no graph break. With ``check_values=False``
the eager step never synchronises either: the queue state lives on the device (0-dim int64 counters),
sampling uses the portable integer hash on the device, and the data-dependent sample size is handled
by masking a fixed-size candidate set — no ``.item()``, ``.tolist()``, ``.cpu()`` or Python ``random``
in the per-step path (either solver; see
:mod:`gammapo_torch._calibration`). ``state_to_dict`` reads the counters back (checkpoint time only).
On CUDA the mirror calibration of up to 4096 gaps runs as one fused Triton kernel when Triton is
installed (:mod:`gammapo_torch._triton_calibration`).

Distributed semantics
---------------------
With ``torch.distributed`` initialised and more than one rank, :func:`gamma_po_loss` all-gathers the
detached gaps of every rank in rank order, calibrates on the global batch (identical on every rank),
keeps the margins of its own slice, and in queue mode every rank pushes the same global gaps, so the
queues stay identical. The result equals one process on the concatenated batch. Every rank must
pass the same number of pairs; with value checks on, unequal sizes raise ``InputError`` (details in
:mod:`gammapo_torch._distributed`).
"""

from gammapo_spec.gamma_po import LossOutput

from ._calibration import calibrate_margins
from ._gamma_po import gamma_po_loss, loss_metrics, loss_with_margins
from ._interop import asarray, gamma_po_loss_and_grad, to_numpy
from ._losses import pair_losses, target_margins
from ._rewards import implicit_rewards, reward_gap
from ._state import QueueState, calibrate_step, init_state, state_from_dict, state_to_dict
from .wrapper import GammaPOLoss

#: The backend name under which :func:`gammapo.get_backend` returns this module.
name = "torch"

__all__ = [
    "GammaPOLoss",
    "LossOutput",
    "QueueState",
    "asarray",
    "calibrate_margins",
    "calibrate_step",
    "gamma_po_loss",
    "gamma_po_loss_and_grad",
    "implicit_rewards",
    "init_state",
    "loss_metrics",
    "loss_with_margins",
    "name",
    "pair_losses",
    "reward_gap",
    "state_from_dict",
    "state_to_dict",
    "target_margins",
    "to_numpy",
]
