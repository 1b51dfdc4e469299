"""One validated configuration type per method: γ-PO (every loss and calibration mode), β-DPO, ε-DPO.

A :class:`GammaPOConfig`, :class:`BetaDPOConfig` or :class:`EpsilonDPOConfig` is immutable and checked
when it is built (by :mod:`gammapo_spec.hyperparams`, the one validator of hyper-parameters): every bad
value raises :class:`~gammapo_spec.errors.ConfigError` whose ``field`` names the offending field, so a
typo in a sweep fails at start-up rather than after an hour of training. :func:`gammapo_spec.init` and
:func:`gammapo_spec.step` dispatch on the config's type.

Loss names
----------
The base losses are ``dpo``, ``ipo``, ``hinge``, ``robust``, ``simpo`` and ``rdpo``. Prefixing a name
with ``gamma-`` switches on γ-PO's dynamic per-pair margins for it (``gamma-simpo``, ``gamma-dpo``,
…); without the prefix the loss uses its constant base margin and needs no calibration.

Hyper-parameters and their units
--------------------------------
γ0 is expressed in the units of the reward gap ``h`` (that is, already multiplied by β), exactly as the
released code computes it: ``gamma0 = beta * gamma_beta_ratio``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import ConfigError
from .hyperparams import check_beta, check_bool, check_epsilon, check_label_smoothing
# the private names under which calibration.py imports the validators
from .hyperparams import check_choice as _check_choice
from .hyperparams import check_int as _check_int
from .hyperparams import check_real as _check_real
from .hyperparams import is_int as _is_int
from .hyperparams import is_real as _is_real

__all__ = [
    "BASE_LOSSES",
    "LOSS_NAMES",
    "REFERENCE_FREE_LOSSES",
    "SMOOTHED_LOSSES",
    "SOLVERS",
    "CALIBRATION_MODES",
    "SFT_REDUCTIONS",
    "MAX_ITERS",
    "MAX_QUEUE_SIZE",
    "MAX_SAMPLE_SIZE",
    "GammaPOConfig",
    "BetaDPOConfig",
    "EpsilonDPOConfig",
]

#: The base losses γ-PO plugs into.
BASE_LOSSES: tuple[str, ...] = ("dpo", "ipo", "hinge", "robust", "simpo", "rdpo")
#: Every accepted value of ``GammaPOConfig.loss``: each base loss, plain and with ``gamma-``.
LOSS_NAMES: tuple[str, ...] = BASE_LOSSES + tuple(f"gamma-{name}" for name in BASE_LOSSES)
#: Losses whose implicit rewards need no reference model (length-normalised log-probs).
REFERENCE_FREE_LOSSES: frozenset[str] = frozenset({"simpo"})
#: Losses that accept ``label_smoothing`` (the cDPO form; for ``robust`` it is the flip rate ε).
SMOOTHED_LOSSES: frozenset[str] = frozenset({"dpo", "simpo", "rdpo", "robust"})
#: Calibration solvers: the minimiser (fixed-work KKT root-find, the default), or the released
#: mirror-descent arithmetic (what reproduces the paper; unreliable outside its regime).
SOLVERS: tuple[str, ...] = ("exact", "mirror")
#: Where the calibration set comes from.
CALIBRATION_MODES: tuple[str, ...] = ("batch", "queue")
#: How SimPO's SFT term averages the chosen responses' NLL: over pairs (the default) or over tokens.
SFT_REDUCTIONS: tuple[str, ...] = ("pair", "token")
#: The largest ``queue_size``: 2**24 slots (a 128 MiB float64 buffer; counters and slot indices stay
#: far inside every backend's 32-bit arithmetic).
MAX_QUEUE_SIZE: int = 1 << 24
#: The largest ``sample_size`` (the calibration set of one step holds at most this many stored gaps).
MAX_SAMPLE_SIZE: int = 1 << 24
#: The largest ``iters`` of the mirror solver (the released code uses 20; it converges, where it
#: does, within a few hundred).
MAX_ITERS: int = 100_000


class _ConfigMethods:
    """``replace``, ``to_dict`` and ``from_dict``, the same for every method's config."""

    def replace(self, **changes: Any):
        """A copy with some fields changed (and validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Build a config from :meth:`to_dict`'s output; unknown keys raise ``ConfigError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown config field(s) {unknown}; known fields are {sorted(known)}",
                field=unknown[0],
            )
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class GammaPOConfig(_ConfigMethods):
    """Hyper-parameters of a γ-PO loss, validated on construction.

    The defaults are the released Llama-3-8B-Instruct recipe (``gamma-simpo``, β = 10,
    γ0/β = 0.4, τ = 10, queue calibration with capacity 2048 and 256 gaps per calibration).

    Args:
        loss: one of :data:`LOSS_NAMES`. ``gamma-`` switches on dynamic per-pair margins.
        beta: β > 0, the scale of the implicit rewards.
        gamma_beta_ratio: γ0/β ≥ 0. The base target margin γ0 = β · ratio is the SimPO margin and
            the mean of the calibrated margins.
        tau: τ > 0, the entropy weight of the calibration (τ → ∞ gives γ_i = γ0 for every pair).
        solver: ``"exact"`` (the minimiser of the calibration problem, the default) or ``"mirror"``
            (the released arithmetic, bit-faithful; it warns where it does not converge:
            κ = γ0²/(8τ) > 0.5 or τ < 0.5); see :func:`gammapo_spec.calibrate_margins`.
        iters: 1 ≤ K ≤ :data:`MAX_ITERS`, mirror-descent iterations (the released code uses 20; ``"mirror"`` only).
        calibration: ``"queue"`` (the paper's Algorithm 2: current gaps plus a sample of recent
            ones) or ``"batch"`` (the current batch only; needs no state).
        queue_size: capacity of the queue of recent gaps (1 to :data:`MAX_QUEUE_SIZE`).
        sample_size: size of the calibration set in queue mode (1 to :data:`MAX_SAMPLE_SIZE`): each step calibrates on
            ``min(stored, max(sample_size - n, 0))`` sampled gaps plus the current ``n``.
        queue_warmup: number of standard-normal draws the queue starts with (0 ≤ warm-up ≤
            queue_size); the released code seeds its queue with 8.
        label_smoothing: 0 ≤ ε < 0.5. For ``dpo``, ``simpo`` and ``rdpo`` the conservative (cDPO)
            smoothing; for ``robust`` the assumed flip rate. Other losses reject a non-zero value.
        sft_weight: weight ≥ 0 of SimPO's optional NLL term on the chosen response (``simpo`` only).
        sft_reduction: how that term averages: ``"pair"`` (the default, the mean over pairs of each
            chosen response's per-token NLL) or ``"token"`` (the mean over all chosen tokens of the
            batch, as the released SimPO trainer and TRL's ``cpo_alpha``); see
            :func:`gammapo_spec.losses.sft_terms`.
        rdpo_alpha: α of R-DPO's length margin ``α (len_w − len_l)`` (``rdpo`` only).
        check_values: check inputs for non-finite values and non-positive lengths (the shape checks
            always run). Backends that can only check values with a host synchronisation say so.

    Numbers may be Python or NumPy scalars (``np.float32``, ``np.int64``, …); they are stored as the
    Python ``int``/``float`` they equal. Booleans and complex numbers are refused.

    Raises:
        ConfigError: for any value outside its domain; ``error.field`` names the field.

    Example:
        >>> from gammapo_spec import GammaPOConfig
        >>> cfg = GammaPOConfig(loss="gamma-dpo", beta=0.1, gamma_beta_ratio=5.0, tau=10.0)
        >>> cfg.base_loss, cfg.dynamic_margins, round(cfg.gamma0, 12)
        ('dpo', True, 0.5)
        >>> GammaPOConfig(beta=0.0)
        Traceback (most recent call last):
        ...
        gammapo_spec.errors.ConfigError: beta must be a finite number > 0, got 0.0
    """

    loss: str = "gamma-simpo"
    beta: float = 10.0
    gamma_beta_ratio: float = 0.4
    tau: float = 10.0
    solver: str = "exact"
    iters: int = 20
    calibration: str = "queue"
    queue_size: int = 2048
    sample_size: int = 256
    queue_warmup: int = 8
    label_smoothing: float = 0.0
    sft_weight: float = 0.0
    sft_reduction: str = "pair"
    rdpo_alpha: float = 0.0
    check_values: bool = True

    def __post_init__(self) -> None:
        _normalise_numbers(self)
        _check_choice("loss", self.loss, LOSS_NAMES)
        check_beta(self.beta)
        _check_real("gamma_beta_ratio", self.gamma_beta_ratio, low=0.0)
        _check_real("tau", self.tau, low=0.0, low_open=True)
        _check_choice("solver", self.solver, SOLVERS)
        _check_int("iters", self.iters, low=1, high=MAX_ITERS)
        if self.solver == "mirror" and self.dynamic_margins:
            from .calibration import warn_mirror_regime

            warn_mirror_regime(self.gamma0, self.tau, self.iters)
        _check_choice("calibration", self.calibration, CALIBRATION_MODES)
        _check_int("queue_size", self.queue_size, low=1, high=MAX_QUEUE_SIZE)
        _check_int("sample_size", self.sample_size, low=1, high=MAX_SAMPLE_SIZE)
        _check_int("queue_warmup", self.queue_warmup, low=0)
        if self.queue_warmup > self.queue_size:
            raise ConfigError(
                f"queue_warmup must be <= queue_size ({self.queue_size}), got {self.queue_warmup}",
                field="queue_warmup",
            )
        check_label_smoothing(self.label_smoothing)
        if self.label_smoothing > 0 and self.base_loss not in SMOOTHED_LOSSES:
            raise ConfigError(
                f"label_smoothing applies to {sorted(SMOOTHED_LOSSES)}, not to {self.base_loss!r}; "
                f"got {self.label_smoothing}",
                field="label_smoothing",
            )
        _check_real("sft_weight", self.sft_weight, low=0.0)
        if self.sft_weight > 0 and self.base_loss != "simpo":
            raise ConfigError(
                f"sft_weight applies to 'simpo' only, not to {self.base_loss!r}; got {self.sft_weight}",
                field="sft_weight",
            )
        _check_choice("sft_reduction", self.sft_reduction, SFT_REDUCTIONS)
        _check_real("rdpo_alpha", self.rdpo_alpha)
        if self.rdpo_alpha != 0 and self.base_loss != "rdpo":
            raise ConfigError(
                f"rdpo_alpha applies to 'rdpo' only, not to {self.base_loss!r}; got {self.rdpo_alpha}",
                field="rdpo_alpha",
            )
        check_bool("check_values", self.check_values)

    # ----------------------------------------------------------------------------------------
    @property
    def base_loss(self) -> str:
        """The loss without its ``gamma-`` prefix."""
        return self.loss.removeprefix("gamma-")

    @property
    def dynamic_margins(self) -> bool:
        """Whether γ-PO's calibrated per-pair margins are on (the ``gamma-`` prefix)."""
        return self.loss.startswith("gamma-")

    @property
    def gamma0(self) -> float:
        """γ0 = β · gamma_beta_ratio: the base margin in reward-gap units and the mean of γ."""
        return self.beta * self.gamma_beta_ratio

    @property
    def reference_free(self) -> bool:
        """Whether the implicit rewards are length-normalised and reference-free (SimPO)."""
        return self.base_loss in REFERENCE_FREE_LOSSES

    @property
    def stateful(self) -> bool:
        """Whether the loss carries calibration state between steps (dynamic margins, queue mode)."""
        return self.dynamic_margins and self.calibration == "queue"


@dataclasses.dataclass(frozen=True)
class BetaDPOConfig(_ConfigMethods):
    r"""Hyper-parameters of β-DPO (:mod:`gammapo_spec.beta_dpo`), validated on construction.

    The defaults are the β-DPO authors' published settings (``loss.beta=0.1 loss.a=0.6
    loss.mode_weight=0.2``, i.e. ρ = 0.8, momentum 0.9); the batch β of one step is
    :math:`\max(\beta_\min, \beta_0[1 + \alpha(\bar\Delta_\text{kept} - M_0)])`.

    Args:
        beta0: the base :math:`\beta_0 > 0`.
        alpha: the scaling α of β (finite; 0 gives β = β0).
        rho: the fraction of pairs kept by the Gaussian filter, in (0, 1].
        momentum: μ of the running statistics :math:`M_0, \sigma`, in [0, 1).
        beta_min: the floor of β, > 0.

    Raises:
        ConfigError: a value outside its domain; ``error.field`` names the field.

    Example:
        >>> from gammapo_spec import BetaDPOConfig
        >>> BetaDPOConfig(rho=1.0).rho
        1.0
        >>> BetaDPOConfig(rho=0.0)
        Traceback (most recent call last):
        ...
        gammapo_spec.errors.ConfigError: rho must be a number in (0, 1], got 0.0
    """

    beta0: float = 0.1
    alpha: float = 0.6
    rho: float = 0.8
    momentum: float = 0.9
    beta_min: float = 1e-3

    def __post_init__(self) -> None:
        _store(self, beta0=check_beta(self.beta0, "beta0"), alpha=_check_real("alpha", self.alpha),
               rho=_check_real("rho", self.rho, low=0.0, high=1.0, low_open=True, high_open=False),
               momentum=_check_real("momentum", self.momentum, low=0.0, high=1.0),
               beta_min=check_beta(self.beta_min, "beta_min"))


@dataclasses.dataclass(frozen=True)
class EpsilonDPOConfig(_ConfigMethods):
    r"""Hyper-parameters of ε-DPO (:mod:`gammapo_spec.epsilon_dpo`), validated on construction.

    Args:
        beta: the *initial* global β > 0 (the state carries the current one, which moves by
            :math:`\beta \leftarrow \beta/(1 + \varepsilon\,\overline{s})` after every optimiser step).
        epsilon: the perturbation size ε in (0, 1) (the paper's default 0.01).
        label_smoothing: :math:`\varepsilon_\text{ls} \in [0, 0.5)`, the cDPO smoothing.
        update_beta: ``True`` (the default): each :func:`~gammapo_spec.step` is one optimiser step and
            updates β at its end. ``False``: a step only accumulates its pairs' steps :math:`s_i`; call
            :func:`~gammapo_spec.epsilon_update_beta` on the state after each optimiser step (gradient
            accumulation over several micro-batches).

    Raises:
        ConfigError: a value outside its domain; ``error.field`` names the field.

    Example:
        >>> from gammapo_spec import EpsilonDPOConfig
        >>> EpsilonDPOConfig(beta=0.1, epsilon=0.01).update_beta
        True
        >>> EpsilonDPOConfig(epsilon=1.0)
        Traceback (most recent call last):
        ...
        gammapo_spec.errors.ConfigError: epsilon must be a number in (0, 1), got 1.0
    """

    beta: float = 0.1
    epsilon: float = 0.01
    label_smoothing: float = 0.0
    update_beta: bool = True

    def __post_init__(self) -> None:
        _store(self, beta=check_beta(self.beta), epsilon=check_epsilon(self.epsilon),
               label_smoothing=check_label_smoothing(self.label_smoothing),
               update_beta=check_bool("update_beta", self.update_beta))


def _store(config: Any, **values: Any) -> None:
    """Store validated values (Python numbers) on a frozen config."""
    for name, value in values.items():
        object.__setattr__(config, name, value)


_INT_FIELDS = ("iters", "queue_size", "sample_size", "queue_warmup")
_REAL_FIELDS = ("beta", "gamma_beta_ratio", "tau", "label_smoothing", "sft_weight", "rdpo_alpha")


def _normalise_numbers(config: "GammaPOConfig") -> None:
    """Store NumPy scalars (``np.float32(0.1)``, ``np.int64(64)``) as the Python numbers they equal, so
    every accepted config is JSON-serialisable and compares equal to its plain-Python twin."""
    for name in _INT_FIELDS:
        value = getattr(config, name)
        if _is_int(value) and type(value) is not int:
            object.__setattr__(config, name, int(value))
    for name in _REAL_FIELDS:
        value = getattr(config, name)
        if _is_real(value) and type(value) not in (int, float):
            object.__setattr__(config, name, float(value))
