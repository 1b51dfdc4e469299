r"""Public Hypothesis strategies for γ-PO inputs, reusable by any backend's own tests.

* :func:`configs` — valid :class:`~gammapo_spec.GammaPOConfig` (every loss; β, γ0/β, τ ∈ [1e-3, 1e3]
  log-uniform, solver, iterations, smoothing, SFT weight, R-DPO α, batch or queue calibration);
* :func:`batches` — per-pair inputs of 1..4096 pairs with a pattern: ``normal``, ``near_tie``
  (chosen ≈ rejected to the last bits), ``extreme`` (gaps of 1e3..1e4: log-sigmoid must not overflow),
  ``constant``;
* :func:`dtypes` — "float64", "float32", "bfloat16";
* :func:`queue_states` — a config in queue mode with its state advanced to a drawn fill level;
* :func:`invalid_inputs` — inputs broken in one way, with the field the error must name.

Example:
    >>> from hypothesis import given
    >>> from gammapo_conformance.strategies import configs, batches
    >>> @given(configs().flatmap(lambda c: batches(c)))
    ... def test(batch): assert batch.n >= 1
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

import gammapo_spec as R
from gammapo_spec.validation import LENGTH_FIELDS, required_fields

__all__ = ["Batch", "configs", "config_from_seed", "batch_plan", "RECIPES", "BROKEN", "all_invalid_inputs", "batches", "dtypes", "sizes", "taus", "queue_states", "invalid_inputs", "PATTERNS",
           "AP_PATTERNS", "make_ap_columns", "ap_columns"]

PATTERNS = ("normal", "near_tie", "extreme", "constant")


def taus() -> st.SearchStrategy[float]:
    """τ log-uniform in [1e-3, 1e3]."""
    return st.floats(-3.0, 3.0).map(lambda e: float(10.0**e))


def sizes(max_size: int = 4096) -> st.SearchStrategy[int]:
    """Batch sizes: mostly 1..64, sometimes 256, 1024 or ``max_size`` (default 4096)."""
    big = [s for s in (256, 1024, 4096) if s <= max_size]
    return st.one_of(st.integers(1, min(64, max_size)), st.sampled_from(big or [max_size]))


def dtypes() -> st.SearchStrategy[str]:
    """The input dtypes of the dtype policy."""
    return st.sampled_from(["float64", "float32", "bfloat16"])


#: The released recipes (loss, β, γ0/β, τ): γ-SimPO for Llama-3, Gemma-2, Mistral, Qwen-2.5 and the
#: tiny study, and γ-DPO with β = 0.1.
RECIPES = (
    ("gamma-simpo", 10.0, 0.4, 10.0), ("gamma-simpo", 10.0, 0.5, 20.0), ("gamma-simpo", 2.5, 0.15, 10.0),
    ("gamma-simpo", 10.0, 0.3, 3.0), ("gamma-simpo", 2.0, 0.5, 1.0), ("gamma-dpo", 0.1, 10.0, 1.0),
)
BETAS = (1e-3, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 2.5, 10.0, 100.0, 1e3)
RATIOS = (0.0, 0.1, 0.15, 0.3, 0.4, 0.5, 1.0, 5.0)
TAUS_USED = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0)


def config_from_seed(seed: int, losses=R.LOSS_NAMES, calibration=("batch", "queue")) -> R.GammaPOConfig | None:
    """The config the integer ``seed`` stands for (``None`` if the combination is invalid).

    Every choice is uniform over its list, from ``numpy``'s generator seeded with ``seed``, so the
    draws cover every loss, optional term and range evenly and do not depend on how Hypothesis
    favours the first entries of a list or on which modules are imported. One config in five is a
    released recipe (:data:`RECIPES`); otherwise β, γ0/β come from :data:`BETAS`, :data:`RATIOS`,
    τ half from the values users run (:data:`TAUS_USED`), half log-uniform in [1e-3, 1e3]. SimPO's
    NLL term is on in half the SimPO configs, label smoothing in a third of the smoothed losses.
    """
    rng = np.random.default_rng([int(seed), 7])
    pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
    recipes = [r for r in RECIPES if r[0] in losses]
    if recipes and rng.random() < 0.2:
        loss, beta, ratio, tau = pick(recipes)
    else:
        loss, beta, ratio = pick(tuple(losses)), pick(BETAS), pick(RATIOS)
        tau = pick(TAUS_USED) if rng.random() < 0.5 else float(10.0 ** rng.uniform(-3.0, 3.0))
    base = loss.removeprefix("gamma-")
    kw = dict(loss=loss, beta=beta, gamma_beta_ratio=ratio, tau=tau, solver=pick(("mirror", "exact")),
              iters=pick((1, 2, 5, 20, 30)), calibration=pick(tuple(calibration)))
    if base in ("dpo", "simpo", "rdpo", "robust") and rng.random() < 1 / 3:
        kw["label_smoothing"] = pick((0.05, 0.2, 0.49))
    if base == "simpo" and rng.random() < 0.5:
        kw["sft_weight"] = pick((0.1, 0.5, 1.0, 2.0))
    if base == "rdpo":
        kw["rdpo_alpha"] = pick((0.0, 0.05, 0.1, -0.5))
    if kw["calibration"] == "queue":
        q = pick((1, 2, 3, 8, 16, int(rng.integers(1, 65))))
        kw.update(queue_size=q, sample_size=pick((1, max(1, q // 2), q, q + 1, int(rng.integers(1, 97)))),
                  queue_warmup=pick((0, q, int(rng.integers(0, q + 1)))))
    try:
        with warnings.catch_warnings():  # the mirror solver's regime warning is the spec's, not the test's
            warnings.simplefilter("ignore")
            return R.GammaPOConfig(**kw)
    except R.ConfigError:
        return None


@st.composite
def configs(draw, losses=R.LOSS_NAMES, calibration=("batch", "queue")) -> R.GammaPOConfig:
    """A valid config for one of ``losses`` (see :func:`config_from_seed`); invalid ones are rejected."""
    config = config_from_seed(draw(st.integers(0, 2**32 - 1)), losses, calibration)
    assume(config is not None)
    return config


@dataclass
class Batch:
    """Per-pair float64 inputs (lengths are integers stored as float64) and how they were drawn."""

    inputs: dict[str, np.ndarray]
    pattern: str
    seed: int
    n: int = field(init=False)

    def __post_init__(self):
        self.n = int(next(iter(self.inputs.values())).shape[0])

    def short(self) -> str:
        """A compact description (for failure messages)."""
        return f"Batch(n={self.n}, pattern={self.pattern!r}, seed={self.seed})"


def make_batch(config: R.GammaPOConfig, n: int, pattern: str, seed: int) -> Batch:
    """Deterministic inputs of ``n`` pairs for ``config`` (the drawn values are reproducible from these)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name in required_fields(config):
        if name in LENGTH_FIELDS:
            out[name] = rng.integers(1, 512, size=n).astype(np.float64)
        elif pattern == "constant":
            out[name] = np.full(n, -3.0)
        elif pattern == "extreme":
            out[name] = -np.abs(rng.normal(scale=1e4, size=n)) - 1.0
        else:
            out[name] = -np.abs(rng.normal(scale=20.0, size=n)) - 0.5
    if pattern == "near_tie":
        out["rejected_logps"] = out["chosen_logps"] * (1.0 + rng.choice([-1, 0, 1], size=n) * 2.0**-40)
    return Batch(out, pattern, seed)


def batch_plan(seed: int, max_size: int = 4096) -> tuple[int, str]:
    """``(n, pattern)`` for a batch seed: n = 1 one time in ten, 2..64 in 70%, else 256, 1024 or 4096
    (up to ``max_size``); the pattern uniform over :data:`PATTERNS`."""
    rng = np.random.default_rng([int(seed), 11])
    u = rng.random()
    if max_size < 2:
        return 1, PATTERNS[int(rng.integers(len(PATTERNS)))]
    big = [s for s in (256, 1024, 4096) if s <= max_size] or [max_size]
    n = 1 if u < 0.1 else int(rng.integers(2, min(64, max_size) + 1)) if u < 0.8 else \
        big[int(rng.integers(len(big)))]
    return max(1, min(n, max_size)), PATTERNS[int(rng.integers(len(PATTERNS)))]


@st.composite
def batches(draw, config: R.GammaPOConfig, max_size: int = 4096) -> Batch:
    """Inputs for ``config`` of a size and pattern drawn evenly from one seed (:func:`batch_plan`)."""
    seed = draw(st.integers(0, 2**31 - 1))
    n, pattern = batch_plan(seed, max_size)
    return make_batch(config, n, pattern, seed)


@st.composite
def queue_states(draw, config: R.GammaPOConfig | None = None):
    """``(config, seed, pushes)``: a queue config and the gap batches that fill its state.

    Replaying ``pushes`` with :func:`~gammapo_spec.calibrate_step` from ``init_state(config, seed)``
    reaches a fill level between empty and wrapped around several times.
    """
    if config is None:
        config = draw(configs(losses=("gamma-dpo", "gamma-simpo"), calibration=("queue",)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    k = draw(st.integers(0, 4))
    pushes = [rng.normal(scale=3.0, size=draw(st.integers(1, 2 * config.queue_size))) for _ in range(k)]
    return config, seed, pushes


@st.composite
def invalid_inputs(draw, config: R.GammaPOConfig):
    """``(inputs, field)``: valid inputs broken in one drawn way; the error must name ``field``."""
    good = make_batch(config, draw(st.integers(2, 8)), "normal", 0).inputs
    name = draw(st.sampled_from(sorted(good)))
    how = draw(st.sampled_from(["missing", "nan", "inf", "+inf", "2d", "empty", "mismatch", "extra", "nonpositive",
                                "negative"]))
    bad = dict(good)
    if how == "missing":
        del bad[name]
    elif how in ("nan", "inf", "+inf"):
        bad[name] = good[name].copy()
        bad[name][draw(st.integers(0, len(good[name]) - 1))] = {"nan": np.nan, "inf": -np.inf, "+inf": np.inf}[how]
    elif how == "2d":
        bad[name] = good[name][:, None]
    elif how == "empty":
        bad = {k: v[:0] for k, v in good.items()}
        name = sorted(good, key=required_fields(config).index)[0]
    elif how == "mismatch":
        bad[name] = good[name][:-1]
    elif how == "extra":
        extra = [f for f in ("ref_chosen_logps", "chosen_lengths") if f not in good]
        assume(extra)
        name = extra[0]
        bad[name] = np.ones(len(good["chosen_logps"]))
    elif how in ("nonpositive", "negative"):
        assume(name in LENGTH_FIELDS)
        bad[name] = good[name].copy()
        bad[name][draw(st.integers(0, len(good[name]) - 1))] = 0.0 if how == "nonpositive" else -3.0
    return bad, how


#: Every way :func:`all_invalid_inputs` breaks a field (``empty`` empties every field at once).
BROKEN = ("missing", "nan", "-inf", "+inf", "2d", "mismatch", "zero_length", "negative_length", "empty", "extra")


def all_invalid_inputs(config: R.GammaPOConfig, n: int = 3):
    """Every ``(inputs, how)`` of :data:`BROKEN` for every field of ``config`` (a complete, fixed list:
    each error path is taken, whatever the draws), on valid inputs of ``n`` pairs."""
    good = make_batch(config, n, "normal", 0).inputs
    out = []
    for name in sorted(good):
        for how in ("missing", "nan", "-inf", "+inf", "2d", "mismatch"):
            bad = dict(good)
            if how == "missing":
                del bad[name]
            elif how == "2d":
                bad[name] = good[name][:, None]
            elif how == "mismatch":
                bad[name] = good[name][:-1]
            else:
                bad[name] = good[name].copy()
                bad[name][n - 1] = {"nan": np.nan, "-inf": -np.inf, "+inf": np.inf}[how]
            out.append((bad, f"{how} {name}"))
        if name in LENGTH_FIELDS:
            for how, v in (("zero_length", 0.0), ("negative_length", -2.0)):
                bad = dict(good)
                bad[name] = good[name].copy()
                bad[name][0] = v
                out.append((bad, f"{how} {name}"))
    out.append(({k: v[:0] for k, v in good.items()}, "empty (N = 0)"))
    for extra in ("ref_chosen_logps", "chosen_lengths"):
        if extra not in good:
            out.append(({**good, extra: np.ones(n)}, f"extra {extra}"))
    return out


# --- alignment potential (data selection) ------------------------------------------------------------

#: Patterns of per-pair selection columns: ``normal`` (continuous values), ``ties`` (small integers:
#: many equal scores and margins, exact in every dtype), ``constant`` (every column constant).
AP_PATTERNS = ("normal", "ties", "constant")


def make_ap_columns(n: int, pattern: str, seed: int) -> dict[str, np.ndarray]:
    """The columns of the alignment-potential ops for n pairs: scores ``sw``, ``sl`` (1..10),
    log-probs ``c``, ``r``, ``cref``, ``rref`` (in [-50, -1]) and lengths ``lw``, ``ll`` (1..40)."""
    rng = np.random.default_rng(seed)
    if pattern == "constant":
        cols = {k: np.full(n, v) for k, v in (("sw", 7.0), ("sl", 3.0), ("c", -12.5), ("r", -20.0), ("cref", -13.0),
                                              ("rref", -19.0), ("lw", 5.0), ("ll", 8.0))}
        return cols
    cols = {"sw": rng.integers(1, 11, n).astype(float), "sl": rng.integers(1, 11, n).astype(float),
            "lw": rng.integers(1, 41, n).astype(float), "ll": rng.integers(1, 41, n).astype(float)}
    for k in ("c", "r", "cref", "rref"):
        cols[k] = -rng.uniform(1.0, 50.0, n) if pattern == "normal" else -rng.integers(1, 6, n).astype(float)
    return cols


@st.composite
def ap_columns(draw, max_size: int = 512) -> tuple[int, str, int, dict[str, np.ndarray]]:
    """``(n, pattern, seed, columns)`` for the alignment-potential ops (see :func:`make_ap_columns`)."""
    n = draw(st.one_of(st.integers(1, 64), st.sampled_from([s for s in (128, 256, 512) if s <= max_size] or [max_size])))
    pattern = draw(st.sampled_from(AP_PATTERNS))
    seed = draw(st.integers(0, 2**31 - 1))
    return n, pattern, seed, make_ap_columns(n, pattern, seed)
