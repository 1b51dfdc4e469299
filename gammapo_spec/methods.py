r"""One shape for every method: a frozen config, a :class:`Pairs` value, ``init`` and ``step``.

As optax gives every optimiser the same ``init``/``update`` pair, γ-PO, β-DPO and ε-DPO share one
interface whatever their maths and their state:

.. code-block:: python

    state = init(config, seed=0)                  # None where the method carries no state
    out, state = step(config, state, pairs)       # one training step on a batch of pairs

``config`` is a :class:`~gammapo_spec.config.GammaPOConfig`, :class:`~gammapo_spec.config.BetaDPOConfig`
or :class:`~gammapo_spec.config.EpsilonDPOConfig` (each validated on construction); its type chooses the
method. ``pairs`` holds the per-pair inputs of the batch, ``None`` where the method does not use them,
and ``state`` is returned, never mutated. ``step`` is written once over the method functions
(:func:`~gammapo_spec.gamma_po_loss`, :func:`~gammapo_spec.beta_dpo_step`, the ε-DPO ops), which stay
available for finer control; every backend runs this same dispatch on its own functions
(:class:`MethodOps`), so ``gammapo_torch.step`` and ``gammapo_jax.step`` equal this one.

What each method reads from :class:`Pairs` (any other field given raises ``InputError`` naming it):

* **γ-PO**: ``chosen_logps``, ``rejected_logps`` and, by loss, the two ``ref_*`` log-probs and/or the
  two lengths (:func:`~gammapo_spec.validation.required_fields`);
* **β-DPO**: ``chosen_logps``, ``rejected_logps``, ``ref_chosen_logps``, ``ref_rejected_logps``;
* **ε-DPO**: those four and the perturbed log-probs ``chosen_logps_plus``, ``rejected_logps_plus``,
  ``chosen_logps_minus``, ``rejected_logps_minus`` (the sequence log-probs under :math:`z^\pm`, from
  :func:`~gammapo_spec.epsilon_sequence_logps`; :func:`step` derives the steps :math:`s_i` from them).

Example:
    >>> import gammapo_spec as S
    >>> pairs = S.Pairs(chosen_logps=[-1.0, -2.0], rejected_logps=[-3.0, -2.0],
    ...                 ref_chosen_logps=[-2.0, -2.0], ref_rejected_logps=[-2.0, -2.0])
    >>> for config in (S.GammaPOConfig(loss="gamma-dpo", beta=0.1, calibration="batch"),
    ...                S.BetaDPOConfig(beta0=0.1, alpha=0.5, rho=1.0)):
    ...     out, state = S.step(config, S.init(config), pairs)
    ...     print(type(config).__name__, round(float(out.loss), 6))
    GammaPOConfig 0.645643
    BetaDPOConfig 0.625885
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Callable, NamedTuple

from .config import BetaDPOConfig, EpsilonDPOConfig, GammaPOConfig
from .errors import ConfigError, InputError, StateError
from .validation import LENGTH_FIELDS, LOGP_FIELDS, REFERENCE_FIELDS

__all__ = ["Pairs", "MethodOps", "METHOD_CONFIGS", "PERTURBED_FIELDS", "init", "step"]

#: The ε-DPO fields of :class:`Pairs`: sequence log-probs under the perturbed logits :math:`z^\pm`.
PERTURBED_FIELDS = ("chosen_logps_plus", "rejected_logps_plus", "chosen_logps_minus", "rejected_logps_minus")
#: The config types :func:`step` dispatches on.
METHOD_CONFIGS = (GammaPOConfig, BetaDPOConfig, EpsilonDPOConfig)

_GAMMA_FIELDS = LOGP_FIELDS + REFERENCE_FIELDS + LENGTH_FIELDS
_BETA_FIELDS = LOGP_FIELDS + REFERENCE_FIELDS
_EPSILON_FIELDS = _BETA_FIELDS + PERTURBED_FIELDS


class Pairs(NamedTuple):
    """The per-pair inputs of one batch, each ``[N]`` (the backend's arrays), ``None`` where unused.

    A ``NamedTuple``, so it is a JAX pytree (``None`` fields are empty subtrees) and can be passed
    through ``jax.jit``; every backend uses this same class.

    Attributes:
        chosen_logps, rejected_logps: summed policy log-probs of the responses.
        ref_chosen_logps, ref_rejected_logps: the reference model's (reference-based losses, β-DPO, ε-DPO).
        chosen_lengths, rejected_lengths: response lengths in tokens (SimPO, R-DPO).
        chosen_logps_plus, rejected_logps_plus, chosen_logps_minus, rejected_logps_minus: ε-DPO's
            sequence log-probs under the perturbed logits :math:`z^+` and :math:`z^-`.
    """

    chosen_logps: Any
    rejected_logps: Any
    ref_chosen_logps: Any = None
    ref_rejected_logps: Any = None
    chosen_lengths: Any = None
    rejected_lengths: Any = None
    chosen_logps_plus: Any = None
    rejected_logps_plus: Any = None
    chosen_logps_minus: Any = None
    rejected_logps_minus: Any = None


@dataclasses.dataclass(frozen=True)
class MethodOps:
    """One backend's method functions; :meth:`init` and :meth:`step` are the dispatch that every
    backend's ``init``/``step`` runs (written once, here).

    Attributes:
        gamma_po_loss, init_state: the backend's γ-PO loss step and its state constructor.
        beta_dpo: the backend's β-DPO module (``init_beta_dpo_state``, ``beta_dpo_step``, ``BetaDPOState``).
        epsilon_dpo: the backend's ε-DPO module (``init_epsilon_state``, ``epsilon_steps``,
            ``epsilon_dpo_loss``, ``epsilon_accumulate``, ``epsilon_update_beta``, ``EpsilonDPOState``).

    Example:
        >>> import gammapo_spec as S
        >>> from gammapo_spec import beta_dpo, epsilon_dpo
        >>> ops = MethodOps(S.gamma_po_loss, S.init_state, beta_dpo, epsilon_dpo)  # the spec's own
        >>> ops.init(S.GammaPOConfig(calibration="batch")) is None
        True
    """

    gamma_po_loss: Callable[..., Any]
    init_state: Callable[..., Any]
    beta_dpo: Any
    epsilon_dpo: Any

    def init(self, config, seed: int = 0, **options: Any) -> Any:
        """The method's initial state (``options``: the backend's extras, e.g. torch's ``device``)."""
        _check_config(config)
        if isinstance(config, GammaPOConfig):
            return self.init_state(config, seed, **options)
        if isinstance(config, BetaDPOConfig):
            return self.beta_dpo.init_beta_dpo_state(seed, **options)
        return self.epsilon_dpo.init_epsilon_state(config.beta, config.epsilon, **options)

    def step(self, config, state, pairs: Pairs) -> tuple[Any, Any]:
        """One step of the method chosen by ``config``'s type (see :func:`step`)."""
        _check_config(config)
        if not isinstance(pairs, Pairs):
            raise InputError(f"pairs must be a gammapo_spec.Pairs, got {type(pairs).__name__}", field="pairs")
        if isinstance(config, GammaPOConfig):
            _check_fields(f"loss {config.loss!r}", pairs, required=LOGP_FIELDS, allowed=_GAMMA_FIELDS)
            return self.gamma_po_loss(config, state, **_given(pairs, _GAMMA_FIELDS))
        if isinstance(config, BetaDPOConfig):
            x = _check_fields("method 'beta-dpo'", pairs, required=_BETA_FIELDS, allowed=_BETA_FIELDS)
            out = self.beta_dpo.beta_dpo_step(state, *x.values(), **dataclasses.asdict(config))
            return out, out.state
        return self._epsilon_step(config, state, pairs)

    def _epsilon_step(self, config: EpsilonDPOConfig, state, pairs: Pairs) -> tuple[Any, Any]:
        E = self.epsilon_dpo
        if not isinstance(state, E.EpsilonDPOState):
            raise StateError(f"state must be an EpsilonDPOState, got {type(state).__name__}", field="state")
        if isinstance(state.epsilon, numbers.Real) and state.epsilon != config.epsilon:
            raise StateError(f"the state's epsilon {state.epsilon!r} is not the config's {config.epsilon!r}",
                             field="epsilon")
        x = _check_fields("method 'epsilon-dpo'", pairs, required=_EPSILON_FIELDS, allowed=_EPSILON_FIELDS)
        s = E.epsilon_steps(*(x[k] for k in LOGP_FIELDS + PERTURBED_FIELDS))
        out = E.epsilon_dpo_loss(*(x[k] for k in _BETA_FIELDS), s, beta=state.beta, epsilon=config.epsilon,
                                 label_smoothing=config.label_smoothing)
        state = E.epsilon_accumulate(state, s)
        if config.update_beta:
            state = E.epsilon_update_beta(state)
        return dataclasses.replace(out, steps=s), state


def _check_config(config) -> None:
    if not isinstance(config, METHOD_CONFIGS):
        names = ", ".join(c.__name__ for c in METHOD_CONFIGS)
        raise ConfigError(f"config must be one of {names}, got {type(config).__name__}", field="config")


def _given(pairs: Pairs, names: tuple[str, ...]) -> dict[str, Any]:
    return {k: getattr(pairs, k) for k in names}


def _check_fields(method: str, pairs: Pairs, *, required: tuple[str, ...], allowed: tuple[str, ...]) -> dict[str, Any]:
    """The ``allowed`` fields of ``pairs`` (in that order); ``InputError`` for a missing required one or
    any other field given (the method cannot use it: a mistake, not something to ignore)."""
    for name in Pairs._fields:
        given = getattr(pairs, name) is not None
        if name in required and not given:
            raise InputError(f"{method} needs {name}, which was not given", field=name)
        if name not in allowed and given:
            raise InputError(f"{method} does not use {name}; pass only {list(allowed)}", field=name)
    return _given(pairs, allowed)


def _spec_ops() -> MethodOps:
    from . import beta_dpo, epsilon_dpo
    from .gamma_po import gamma_po_loss
    from .state import init_state

    return MethodOps(gamma_po_loss, init_state, beta_dpo, epsilon_dpo)


_OPS = _spec_ops()


def init(config, seed: int = 0) -> Any:
    r"""The initial state of the method ``config`` chooses.

    * :class:`~gammapo_spec.config.GammaPOConfig`: :func:`~gammapo_spec.init_state` — a
      :class:`~gammapo_spec.QueueState` (queue of ``queue_warmup`` draws) for ``gamma-*`` losses in queue
      mode, else ``None``;
    * :class:`~gammapo_spec.config.BetaDPOConfig`: :func:`~gammapo_spec.init_beta_dpo_state` —
      :math:`M_0 = \sigma = 0`, step 0, the sampling seed ``seed``;
    * :class:`~gammapo_spec.config.EpsilonDPOConfig`: :func:`~gammapo_spec.epsilon_dpo.init_epsilon_state`
      — the global β = ``config.beta``, ε, nothing accumulated (``seed`` is not used: ε-DPO draws nothing).

    Raises:
        ConfigError: ``config`` is none of the three config types (field ``"config"``).
        StateError: a seed outside ``[0, 2**32)``.

    Example:
        >>> import gammapo_spec as S
        >>> S.init(S.BetaDPOConfig(), seed=3).to_dict()
        {'gap_mean': 0.0, 'gap_std': 0.0, 'step': 0, 'seed': 3}
        >>> S.init(S.EpsilonDPOConfig(beta=0.2, epsilon=0.1))
        EpsilonDPOState(beta=0.2, epsilon=0.1, step_sum=0, step_count=0, updates=0)
    """
    return _OPS.init(config, seed)


def step(config, state, pairs: Pairs) -> tuple[Any, Any]:
    r"""One training step of the method ``config`` chooses: ``(output, new_state)``.

    * **γ-PO** (:class:`~gammapo_spec.config.GammaPOConfig`): :func:`~gammapo_spec.gamma_po_loss` —
      gaps :math:`h`, margins :math:`m_i = m^\text{base}_i + (\gamma_i - \gamma_0)` with γ calibrated
      on the batch (or the batch and a sample of the queue, which the step then pushes the batch's gaps
      to), :math:`\mathcal L = \frac1N\sum_i \ell(h_i - m_i)`; returns a
      :class:`~gammapo_spec.LossOutput` and the next queue state (``None`` stays ``None``).
    * **β-DPO** (:class:`~gammapo_spec.config.BetaDPOConfig`): :func:`~gammapo_spec.beta_dpo_step` —
      :math:`\Delta_i = (c_i - c^\text{ref}_i) - (r_i - r^\text{ref}_i)`; the running :math:`M_0, \sigma`
      are updated first, then k pairs are kept by the Gaussian filter, the batch
      :math:`\beta = \max(\beta_\min, \beta_0[1 + \alpha(\bar\Delta_\text{kept} - M_0)])` and
      :math:`L = \frac1k\sum_i m_i \operatorname{softplus}(-\beta\Delta_i)`; returns a
      :class:`~gammapo_spec.beta_dpo.BetaDPOOutput` and its ``state``.
    * **ε-DPO** (:class:`~gammapo_spec.config.EpsilonDPOConfig`), in this order: (1) the steps
      :math:`s_i` (:func:`~gammapo_spec.epsilon_steps`, from the perturbed log-probs); (2) the loss with
      the state's *current* global β, :math:`\beta_i = \beta/(1 + \varepsilon s_i)`,
      :math:`\mathcal L = \frac1N\sum_i \ell(\beta_i[(c_i - c^\text{ref}_i) - (r_i - r^\text{ref}_i)])`
      (:func:`~gammapo_spec.epsilon_dpo_loss`, cDPO smoothing ``config.label_smoothing``); (3) the steps
      are accumulated into the state (:func:`~gammapo_spec.epsilon_accumulate`); (4) with
      ``config.update_beta`` (the default, one step = one optimiser step) β moves,
      :math:`\beta \leftarrow \beta/(1 + \varepsilon\,\overline{s})` over everything accumulated
      (:func:`~gammapo_spec.epsilon_update_beta`); without it the caller updates β after each optimiser
      step. Returns the :class:`~gammapo_spec.epsilon_dpo.EpsilonDPOOutput` (its ``steps`` filled in)
      and the new :class:`~gammapo_spec.EpsilonDPOState`; the loss used the β *before* the update.

    Args:
        config: the method's config; its type chooses the method.
        state: from :func:`init` or the previous step (``None`` for a stateless γ-PO config).
        pairs: the batch (see the module docs for the fields each method reads).

    Raises:
        ConfigError: ``config`` is none of the three config types (field ``"config"``).
        InputError: ``pairs`` is not a :class:`Pairs` (field ``"pairs"``), or a needed field is missing
            or a field the method does not use is given (naming it), or a bad array (as the method's
            function).
        StateError: a state of another method or config (for ε-DPO: another ε, field ``"epsilon"``).

    Example:
        >>> import gammapo_spec as S
        >>> cfg = S.EpsilonDPOConfig(beta=1.0, epsilon=0.25)
        >>> pairs = S.Pairs([-1.0, -2.0], [-3.0, -2.0], [-2.0, -2.0], [-2.0, -2.0],
        ...                 chosen_logps_plus=[-0.5, -2.0], rejected_logps_plus=[-3.0, -2.0],
        ...                 chosen_logps_minus=[-1.5, -2.0], rejected_logps_minus=[-3.0, -2.0])
        >>> out, state = S.step(cfg, S.init(cfg), pairs)
        >>> out.steps.tolist(), out.betas.tolist(), round(out.loss, 6), round(state.beta, 6)
        ([1, 0], [0.8, 1.0], 0.438524, 0.888889)
    """
    return _OPS.step(config, state, pairs)
