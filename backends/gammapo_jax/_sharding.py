r"""Data-parallel calibration: the ``gather`` hook over a named mesh axis.

In data-parallel training each shard holds ``n`` of the ``P·n`` pairs of the global batch. γ-PO
calibrates on the *global* gaps (the spec's distributed rule: gathered in rank order, every rank
gets the margins of its own slice, and in queue mode every rank pushes the same global gaps, so
the queues stay identical). Inside ``jax.shard_map`` (or ``jax.pmap``) that is one collective:

.. math::

    h^\text{global} = \operatorname{all\_gather}_\text{axis}(h^\text{local})
    \in \mathbb R^{P n},\qquad
    \gamma^\text{local} = \gamma^\text{global}[\,k n : (k+1) n\,],\; k = \operatorname{axis\_index}.

A gather hook is any callable ``hook(local_gaps) -> (global_gaps, offset)``; pass it as
``gather=`` to :func:`gammapo_jax.gamma_po_loss`, :func:`gammapo_jax.gamma_po_loss_and_grad` or
:func:`gammapo_jax.calibrate_step`. :class:`AxisGather` is the one for a named mesh axis.
"""

from __future__ import annotations

import dataclasses

import jax
from jax import lax

__all__ = ["AxisGather"]


@dataclasses.dataclass(frozen=True)
class AxisGather:
    """Gather gaps over the named mesh axis (or axes) of ``shard_map``/``pmap``.

    Attributes:
        axis_name: the data axis, e.g. ``"data"``, or a tuple of axis names (the gather follows
            their linearised order, the same order as a batch sharded over them).

    Hashable (a static argument of jitted functions). Only valid where ``axis_name`` is bound:
    inside ``shard_map``/``pmap`` over it.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jax.sharding import PartitionSpec as P
        >>> from gammapo_jax import AxisGather
        >>> mesh = jax.sharding.Mesh(jax.devices()[:1], ("data",))
        >>> f = jax.shard_map(lambda h: AxisGather("data")(h)[0], mesh=mesh, in_specs=P("data"), out_specs=P())
        >>> f(jnp.arange(3.0)).tolist()
        [0.0, 1.0, 2.0]
    """

    axis_name: str | tuple[str, ...] = "data"

    def __call__(self, local: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(all_gather(local) concatenated in axis order, index of this shard's first entry)``.

        The gathered gaps are typed *invariant* over the axis (``to="invarying"``): they are the
        same on every shard, so the queue state computed from them can leave ``shard_map`` with
        ``out_specs=P()`` under the default ``check_vma=True``.
        """
        gathered = lax.all_gather(local, self.axis_name, tiled=True, to="invarying")
        return gathered, lax.axis_index(self.axis_name) * local.shape[0]
