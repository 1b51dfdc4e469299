"""The objects the conformance tests share: the backend under test, the reference, and checks.

:class:`Harness` is what the ``conf`` fixture gives each test; it holds the :class:`Adapter`,
records each example for the report, and offers the comparisons every op test needs.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import numpy as np
from hypothesis import assume

import gammapo_spec as R
from gammapo_spec.dtype_policy import compute_dtype

from .adapters import Adapter, assert_close, raised
from .tolerances import tolerance

__all__ = ["Harness", "EXAMPLES", "DRAWN", "DIGEST", "repro", "batch_repro", "input_scale", "loss_scale", "gradient_scale", "margin_scale", "gap_scale"]

#: nodeid → number of Hypothesis examples run (read by the report).
EXAMPLES: dict[str, int] = {}
#: nodeid → {"tag=value": count} of what the examples drew (loss, dtype, optional terms; the report shows it).
DRAWN: dict[str, dict[str, int]] = {}
#: nodeid → a digest of every example's config, dtype and tags, in order (equal digests: the same draws).
DIGEST: dict[str, str] = {}

#: Every field of :class:`gammapo_spec.LossOutput` but ``metrics`` (compared key by key).
OUTPUT_FIELDS = ("loss", "losses", "margins", "gaps", "chosen_rewards", "rejected_rewards")
#: The fields of a queue state's checkpoint dict.
STATE_FIELDS = ("buffer", "size", "head", "step", "seed")


def describe(config: R.GammaPOConfig | None = None, dtype: str | None = None, **tags) -> dict[str, str]:
    """The tags of one example: the config's loss, optional terms and calibration, the dtype, extra tags."""
    out: dict[str, str] = {}
    if config is not None:
        out["loss"] = config.loss
        out["sft"] = "on" if config.sft_weight > 0 else "off"
        out["smoothing"] = "on" if config.label_smoothing > 0 else "off"
        if config.dynamic_margins:
            out["calibration"] = config.calibration
            out["solver"] = config.solver
    if dtype is not None:
        out["dtype"] = dtype
    out.update({k: str(v) for k, v in tags.items()})
    return out


class Harness:
    """The backend under test for one test function, with comparison helpers."""

    def __init__(self, backend: Any, nodeid: str):
        self.ad = Adapter(backend)
        self.B = backend
        self.nodeid = nodeid

    def example(self, dtype: str = "float64", config: R.GammaPOConfig | None = None, **tags) -> None:
        """Count one example and what it drew (``config``, ``dtype``, ``tags``: shown in the report);
        reject it if the backend does not support ``dtype``."""
        # an unsupported dtype (the NumPy reference has no bfloat16) is not an example: reject it
        assume(self.ad.supports(dtype))
        EXAMPLES[self.nodeid] = EXAMPLES.get(self.nodeid, 0) + 1
        h = hashlib.sha256((DIGEST.get(self.nodeid, "") + repr(config) + dtype + repr(sorted(tags.items()))).encode())
        DIGEST[self.nodeid] = h.hexdigest()[:16]
        drawn = DRAWN.setdefault(self.nodeid, {})
        for k, v in describe(config, dtype, **tags).items():
            drawn[f"{k}={v}"] = drawn.get(f"{k}={v}", 0) + 1

    def loss_output(self, out, ref, config: R.GammaPOConfig, dtype: str, what: str, *, scale: float, loss_scale: float,
                    margin_tol: dict | None = None, margin_scale: float | None = None) -> None:
        """Every field of a backend's :class:`~gammapo_spec.LossOutput` against the spec's ``ref``.

        ``scale`` bounds the gaps' and rewards' rounding (:func:`input_scale`), ``loss_scale`` the
        losses' (:func:`loss_scale`); margins use the "calibration" family with ``margin_tol``
        (solver, τ, γ0, K) when given, else the values row. ``metrics`` must have the spec's keys, each
        a scalar equal to the spec's formula (:func:`gammapo_spec.loss_metrics`) on the spec's arrays;
        ``rewards/accuracies`` may differ only by the pairs whose reward difference is within rounding.
        """
        for f in OUTPUT_FIELDS:
            if not hasattr(out, f):
                raise AssertionError(f"{what}: the backend's output has no field {f!r} (the spec's LossOutput has it)")
        ms = margin_scale if margin_scale is not None else 1.0 + config.gamma0
        if margin_tol is not None:
            self.close(out.margins, ref.margins, dtype, "calibration", f"{what}: margins", scale=ms, **margin_tol)
        else:
            self.close(out.margins, ref.margins, dtype, "values", f"{what}: margins", scale=ms)
        self.close(out.gaps, ref.gaps, dtype, "values", f"{what}: gaps", scale=scale)
        self.close(out.chosen_rewards, ref.chosen_rewards, dtype, "values", f"{what}: chosen_rewards", scale=scale)
        self.close(out.rejected_rewards, ref.rejected_rewards, dtype, "values", f"{what}: rejected_rewards", scale=scale)
        self.close(out.losses, ref.losses, dtype, "values", f"{what}: losses", scale=loss_scale)
        self.close(out.loss, ref.loss, dtype, "values", f"{what}: loss", scale=loss_scale)
        self.metrics(getattr(out, "metrics", None), ref, dtype, what, scale=scale, margin_scale=ms, margin_tol=margin_tol)

    def metrics(self, got, ref, dtype: str, what: str, *, scale: float, margin_scale: float, margin_tol: dict | None) -> None:
        """``metrics`` of a backend's output against :func:`gammapo_spec.loss_metrics` of the spec's output."""
        want = ref.metrics
        if not hasattr(got, "keys"):
            raise AssertionError(f"{what}: metrics is {type(got).__name__}, the spec's is a mapping with keys {sorted(want)}")
        if set(got.keys()) != set(want):
            raise AssertionError(f"{what}: metrics keys {sorted(got.keys())} != the spec's {sorted(want)}")
        cw, rl = np.asarray(ref.chosen_rewards, np.float64), np.asarray(ref.rejected_rewards, np.float64)
        tol = tolerance(dtype, "values")
        n = max(1, cw.size)
        for k, v in want.items():
            g = self.ad.numpy(got[k])
            if g.shape != ():
                raise AssertionError(f"{what}: metrics[{k!r}] has shape {g.shape}; the spec's is a scalar")
            if k == "rewards/accuracies":
                # a pair whose reward difference is within rounding may count either way; an exact tie
                # (equal inputs) is exact in every arithmetic and is not accurate (h > 0 is strict)
                d = np.abs(cw - rl)
                near = (d > 0) & (d <= 2 * (tol.atol * scale + tol.rtol * np.maximum(np.abs(cw), np.abs(rl))))
                slack = float(np.sum(near)) / n
                if not abs(float(g) - v) <= slack + tol.atol + tol.rtol * abs(v):
                    raise AssertionError(f"{what}: metrics['rewards/accuracies'] backend {float(g)!r} vs spec {v!r} "
                                         f"(only {int(np.sum(near))} of {n} pairs are ties within rounding)")
            elif k.startswith("margins/"):
                fam = "calibration" if margin_tol is not None else "values"
                self.close(g, v, dtype, fam, f"{what}: metrics[{k!r}]", scale=margin_scale, **(margin_tol or {}))
            else:
                self.close(g, v, dtype, "values", f"{what}: metrics[{k!r}]", scale=scale)

    def ref_state(self, state, what: str):
        """The spec's :class:`~gammapo_spec.QueueState` rebuilt from a backend state's checkpoint dict.

        A dict the spec rejects is the backend's fault, and the failure says so (not a ``StateError``
        that reads as if the reference broke).
        """
        d = self.ad.state(state)
        if d is None:
            return None
        if set(d) != set(STATE_FIELDS):
            raise AssertionError(f"{what}: the backend's state_to_dict gave keys {sorted(d)}; the spec's are {list(STATE_FIELDS)}")
        try:
            return R.state_from_dict(d)
        except R.StateError as exc:
            raise AssertionError(f"{what}: the backend's state_to_dict gave a state the spec rejects "
                                 f"(field {exc.field!r}: {exc}); the backend's state is broken") from None

    def queue_state(self, state, want, dtype: str, what: str, *, scale: float) -> None:
        """A backend state against the spec's state ``want``, field by field: the integers exactly, the
        whole buffer (slots not yet written included) to the values row of the state's dtype; then the
        round trip ``state_from_dict(state_to_dict(s))`` keeps every field, and the backend rebuilds
        the spec's own checkpoint dict to the same fields."""
        if want is None:
            if state is not None:
                raise AssertionError(f"{what}: the backend returned a state where the spec has None")
            return
        if state is None:
            raise AssertionError(f"{what}: the backend returned state None where the spec has a queue state")
        w = R.state_to_dict(want)
        got = self.ad.state(state)
        if got is None or set(got) != set(STATE_FIELDS):
            raise AssertionError(f"{what}: the backend's state_to_dict gave {None if got is None else sorted(got)}; "
                                 f"the spec's keys are {list(STATE_FIELDS)}")
        for k in ("size", "head", "step", "seed"):
            if got[k] != w[k]:
                raise AssertionError(f"{what}: backend state.{k} = {got[k]}, the spec's is {w[k]}")
        assert_close(got["buffer"], w["buffer"], tolerance(dtype, "values"), f"{what}: state.buffer", scale)
        again = self.ad.state(self.B.state_from_dict(self.B.state_to_dict(state)))
        for k in ("size", "head", "step", "seed"):
            if again[k] != got[k]:
                raise AssertionError(f"{what}: state_from_dict(state_to_dict(s)) changed {k}: {got[k]} -> {again[k]}")
        if not np.array_equal(again["buffer"], got["buffer"]):
            raise AssertionError(f"{what}: state_from_dict(state_to_dict(s)) changed the buffer")
        rebuilt = self.ad.state(self.B.state_from_dict(w))
        for k in ("size", "head", "step", "seed"):
            if rebuilt[k] != w[k]:
                raise AssertionError(f"{what}: the backend's state_from_dict(spec dict) has {k} = {rebuilt[k]}, "
                                     f"the dict has {w[k]}")
        assert_close(rebuilt["buffer"], w["buffer"], tolerance(dtype, "values"),
                     f"{what}: the backend's state_from_dict(spec dict).buffer", scale)

    def close(self, actual, expected, dtype: str, family: str, what: str, *, scale: float = 1.0, solver="exact", tau=1.0,
              gamma0=0.0, iters=20):
        """Compare a backend value (converted with ``to_numpy``) with the reference.

        ``solver``, ``tau``, ``gamma0`` and ``iters`` pick the "calibration" tolerance (see
        :func:`~gammapo_conformance.tolerances.tolerance`); other families ignore them.
        """
        tol = tolerance(dtype, family, solver=solver, tau=tau, gamma0=gamma0, iters=iters)
        assert_close(self.ad.numpy(actual), expected, tol, what, scale)

    def same_error(self, reference: Callable[[], Any], backend: Callable[[], Any], what: str) -> BaseException:
        """Both calls raise; same class and same ``.field`` (messages are shown when they differ)."""
        ref = raised(reference)
        assert ref is not None, f"{what}: the reference raised nothing (test bug)"
        got = raised(backend)
        assert got is not None, f"{what}: backend raised nothing; reference raised {type(ref).__name__}: {ref}"
        assert type(got) is type(ref), (
            f"{what}: backend raised {type(got).__name__}({got}), reference {type(ref).__name__}({ref})"
        )
        gf, rf = getattr(got, "field", None), getattr(ref, "field", None)
        assert gf == rf, f"{what}: error field {gf!r} != reference {rf!r} (messages: {got} | {ref})"
        return got


def margin_scale(config: R.GammaPOConfig) -> float:
    """Natural size of margins: 1 + γ0."""
    return 1.0 + abs(config.gamma0)


def gap_scale(gaps: np.ndarray) -> float:
    """Natural size of gaps (for absolute tolerances): 1 + max |h|."""
    return 1.0 + float(np.max(np.abs(gaps))) if np.size(gaps) else 1.0


def repro(backend: str, op: str, config: R.GammaPOConfig, dtype: str, args: str) -> str:
    """A copy-pasteable snippet reproducing one example (printed by Hypothesis on failure)."""
    return (
        "# reproduce:\n"
        "import numpy as np, gammapo, gammapo_spec as R\n"
        "from gammapo._registry import load_backend_object\n"
        "from gammapo_conformance.adapters import Adapter\n"
        f"B = load_backend_object({backend!r}); ad = Adapter(B)\n"
        f"cfg = R.{config!r}\n"
        f"{args}\n"
        f"# then compare B.{op}(...) on ad.inputs(inputs, {dtype!r}) with R.{op}(...) on the rounded inputs\n"
    )


def batch_repro(batch) -> str:
    """Code that rebuilds a drawn batch."""
    return (
        "from gammapo_conformance.strategies import make_batch\n"
        f"inputs = make_batch(cfg, {batch.n}, {batch.pattern!r}, {batch.seed}).inputs"
    )


def input_scale(config: R.GammaPOConfig, inputs: dict) -> float:
    """Natural size of gaps for absolute tolerances: 1 + β·max|log-prob| (cancellation in c − r)."""
    logps = [np.max(np.abs(v)) for k, v in inputs.items() if "logps" in k]
    return 1.0 + config.beta * float(max(logps))


def loss_scale(config: R.GammaPOConfig, ref, scale: float) -> float:
    r"""Natural size of per-pair losses for absolute tolerances: ``scale`` · max(1, max|ℓ'(z)|), z = h − m.

    ``scale`` (:func:`input_scale`) bounds the rounding of the gap h; a gap off by δh moves the loss by
    ℓ'(z)·δh. |ℓ'| ≤ 1 for the logistic and hinge losses, ≤ 1/(1 − 2ε) for robust, and 2|z − ½|/β²
    for IPO, unbounded: a float32 gap off by one rounding (5.7e-7) moved an IPO loss with β = 0.001 by
    0.065 (2.0e-5 relative, just past float32's 2e-5) in a random conformance run of a correct backend.
    ``ref`` is the reference's output (its ``gaps`` and ``margins``).
    """
    z = np.asarray(ref.gaps, dtype=np.float64) - np.asarray(ref.margins, dtype=np.float64)
    slope = float(np.max(np.abs(R.pair_loss_derivative(config, z)))) if z.size else 0.0
    return scale * max(1.0, slope)



def gradient_scale(config: R.GammaPOConfig, grad: np.ndarray, z: np.ndarray, scale: float, dtype: str) -> float:
    r"""Natural size of a loss gradient for absolute tolerances.

    .. math::  \max_i |g_i| + \frac1N + c\,\cdot\,\text{scale}\cdot\max_i|\ell''(z_i)|\,\frac{\beta}{N},
               \qquad c = 8u/\text{atol}

    d loss/d log-prob_i = ℓ'(z_i)·∂z_i/∂log-prob_i / N with |∂z/∂log-prob| ≤ β. A backend computes z in its
    compute dtype (unit roundoff u), a few roundings of ``scale`` (:func:`input_scale`) away from the
    float64 z, and ℓ' then moves by ℓ''(z)·δz (:func:`gammapo_spec.pair_loss_curvature`); the last term
    allows eight such roundings, written in units of the gradient row's atol. It matters only where the
    gap is large against its own rounding: a correct float32 backend at β = 1000 (γ-SimPO, 256 pairs,
    exact solver) was 7.9× past the old bound max|g| + 1/N and is 1/38 of this one (probe over 72 such
    batches); for float64 the term is 9e-6·scale·ℓ''·β/N.
    """
    n = max(1, int(np.size(z)))
    curvature = float(np.max(R.pair_loss_curvature(config, z))) if np.size(z) else 0.0
    u = float(np.finfo(compute_dtype(dtype)).eps) / 2  # unit roundoff of the dtype policy's compute dtype
    c = 8.0 * u / tolerance(dtype, "gradients").atol
    return float(np.max(np.abs(grad))) + 1.0 / n + c * scale * curvature * config.beta / n
