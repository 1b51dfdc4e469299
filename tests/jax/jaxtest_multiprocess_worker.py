"""One process of a multi-process JAX run, started by test_jax_multiprocess.py.

``python jaxtest_multiprocess_worker.py PROCESS_ID NUM_PROCESSES PORT [--no-gather]``

Every process has 2 CPU devices; ``jax.distributed`` joins them (gloo collectives) into one global
mesh of ``2 · NUM_PROCESSES`` devices over the axis ``"data"``. Each process feeds its own slice of
a global batch (the same seeded draw everywhere) and runs, jitted inside ``shard_map``:

* three γ-SimPO training steps in queue mode on a linear "policy" (log-probs ``-softplus(X @ w)``),
  with ``AxisGather("data")`` and data-parallel gradient averaging (``lax.pmean``), then an SGD
  update of ``w``;
* three β-DPO steps with the same gather.

It compares each against one device running the same steps on the concatenated batch, and prints
one JSON line: the largest differences, and digests of the state and weights (which the test
compares across processes). ``--no-gather`` drops the gather (each shard calibrates alone): the
test checks that the comparison then fails, so it can tell a gathering step from a local one.
"""

from __future__ import annotations

import hashlib
import json
import sys

import jax

jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_num_cpu_devices", 2)
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from gammapo_spec import GammaPOConfig  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import gammapo_jax as G  # noqa: E402
from gammapo_jax import beta_dpo as BD  # noqa: E402

LOCAL_PAIRS = 4  # per device
FEATURES = 3
STEPS = 3
LR = 0.05


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(np.asarray(a, dtype=np.float64)).tobytes())
    return h.hexdigest()[:16]


def _local(x: np.ndarray, mesh) -> jax.Array:
    """This process's rows of the global array ``x``, as one global array sharded over ``data``."""
    per = x.shape[0] // jax.process_count()
    rows = x[jax.process_index() * per:(jax.process_index() + 1) * per]
    return jax.make_array_from_process_local_data(NamedSharding(mesh, P("data")), rows)


def _mine(x: jax.Array) -> np.ndarray:
    """This process's rows of a ``data``-sharded global array, in device order."""
    shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start)
    return np.concatenate([np.asarray(s.data) for s in shards])


def _replicated(x) -> np.ndarray:
    return np.asarray(x.addressable_data(0))


def main() -> None:
    pid, nproc, port = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    gather = None if "--no-gather" in sys.argv else G.AxisGather("data")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=nproc, process_id=pid)
    mesh = jax.make_mesh((jax.device_count(),), ("data",), devices=jax.devices())
    n_global = LOCAL_PAIRS * jax.device_count()
    lo, hi = pid * n_global // nproc, (pid + 1) * n_global // nproc
    rng = np.random.default_rng(7)  # the same global batches on every process
    report: dict = {"process": pid, "processes": jax.process_count(), "devices": jax.device_count()}

    # -- γ-SimPO training steps -------------------------------------------------------------
    cfg = GammaPOConfig(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=1.0, calibration="queue",
                        queue_size=64, sample_size=24, queue_warmup=8)

    def loss_fn(w, state, xc, xr, lc, lr):
        out, new_state = G.gamma_po_loss(cfg, state, chosen_logps=-jax.nn.softplus(xc @ w) * lc,
                                         rejected_logps=-jax.nn.softplus(xr @ w) * lr, chosen_lengths=lc,
                                         rejected_lengths=lr, gather=gather)
        return out.loss, (out.margins, new_state)

    def sharded_step(w, state, xc, xr, lc, lr):
        (_, (margins, new_state)), grad = jax.value_and_grad(loss_fn, has_aux=True)(w, state, xc, xr, lc, lr)
        if gather is not None:
            # check_vma=True: the gradient w.r.t. the replicated w is already summed over the axis
            # (the transpose of the implicit broadcast is a psum); the data-parallel mean divides it.
            grad = grad / jax.lax.psum(1, "data")
        else:
            grad = jax.lax.pmean(grad, "data")  # check_vma=False: per-shard gradients, averaged here
        return w - LR * grad, new_state, margins

    state_spec = P()
    step = jax.jit(jax.shard_map(
        sharded_step, mesh=mesh, in_specs=(P(), state_spec, P("data"), P("data"), P("data"), P("data")),
        out_specs=(P(), state_spec, P("data")), check_vma=gather is not None))

    def single_step(w, state, xc, xr, lc, lr):
        (_, (margins, new_state)), grad = jax.value_and_grad(loss_fn_single, has_aux=True)(w, state, xc, xr, lc, lr)
        return w - LR * grad, new_state, margins

    def loss_fn_single(w, state, xc, xr, lc, lr):
        out, new_state = G.gamma_po_loss(cfg, state, chosen_logps=-jax.nn.softplus(xc @ w) * lc,
                                         rejected_logps=-jax.nn.softplus(xr @ w) * lr, chosen_lengths=lc,
                                         rejected_lengths=lr)
        return out.loss, (out.margins, new_state)

    one_device = jax.local_devices()[0]
    w_sh = jnp.asarray(np.linspace(-0.5, 0.5, FEATURES))
    w_un = jax.device_put(w_sh, one_device)
    s_sh = G.init_state(cfg, seed=3, dtype="float64")
    s_un = jax.device_put(G.init_state(cfg, seed=3, dtype="float64"), one_device)
    margin_diff, state_diff, book = 0.0, 0.0, True
    for _ in range(STEPS):
        xc, xr = (rng.normal(size=(n_global, FEATURES)) for _ in range(2))
        lc, lr = (rng.integers(2, 12, n_global).astype(np.float64) for _ in range(2))
        w_sh, s_sh, m_sh = step(w_sh, s_sh, *(_local(a, mesh) for a in (xc, xr, lc, lr)))
        w_un, s_un, m_un = jax.jit(single_step)(w_un, s_un, *(jax.device_put(a, one_device) for a in (xc, xr, lc, lr)))
        margin_diff = max(margin_diff, float(np.max(np.abs(_mine(m_sh) - np.asarray(m_un)[lo:hi]))))
        d_sh = G.state_to_dict(jax.tree.map(_replicated, s_sh))
        d_un = G.state_to_dict(s_un)
        book &= all(d_sh[k] == d_un[k] for k in ("size", "head", "step", "seed"))
        state_diff = max(state_diff, float(np.max(np.abs(np.asarray(d_sh["buffer"]) - np.asarray(d_un["buffer"])))))
    w_final = _replicated(w_sh)
    report["gamma_po"] = {
        "margin_diff": margin_diff, "state_diff": state_diff, "bookkeeping_equal": bool(book),
        "weight_diff": float(np.max(np.abs(w_final - np.asarray(w_un)))),
        "state_digest": _digest(d_sh["buffer"], [d_sh["size"], d_sh["head"], d_sh["step"]]),
        "weight_digest": _digest(w_final),
    }

    # -- β-DPO steps ------------------------------------------------------------------------
    kw = dict(beta0=0.1, alpha=0.6, rho=0.5)

    def bdpo_sharded(state, c, r, cr, rr):
        out = BD.beta_dpo_step(state, c, r, cr, rr, gather=gather, **kw)
        return jax.lax.pmean(out.loss, "data"), out.mask, out.beta, out.state

    bstep = jax.jit(jax.shard_map(
        bdpo_sharded, mesh=mesh, in_specs=(P(), P("data"), P("data"), P("data"), P("data")),
        out_specs=(P(), P("data"), P(), P()), check_vma=gather is not None))
    b_sh = BD.init_beta_dpo_state(11)
    b_un = BD.init_beta_dpo_state(11)
    loss_diff, mask_equal, beta_diff, bstate_diff = 0.0, True, 0.0, 0.0
    for _ in range(STEPS):
        c, r, cr, rr = (-rng.uniform(1, 30, n_global) for _ in range(4))
        loss_sh, mask_sh, beta_sh, b_sh = bstep(b_sh, *(_local(a, mesh) for a in (c, r, cr, rr)))
        out_un = BD.beta_dpo_step(b_un, *(jax.device_put(a, one_device) for a in (c, r, cr, rr)), **kw)
        b_un = out_un.state
        loss_diff = max(loss_diff, abs(float(_replicated(loss_sh)) - float(out_un.loss)))
        mask_equal &= bool(np.array_equal(_mine(mask_sh), np.asarray(out_un.mask)[lo:hi]))
        beta_diff = max(beta_diff, abs(float(_replicated(beta_sh)) - float(out_un.beta)))
        bs, bu = BD.state_to_dict(jax.tree.map(_replicated, b_sh)), BD.state_to_dict(b_un)
        bstate_diff = max(bstate_diff, abs(bs["gap_mean"] - bu["gap_mean"]), abs(bs["gap_std"] - bu["gap_std"]))
    report["beta_dpo"] = {"loss_diff": loss_diff, "mask_equal": mask_equal, "beta_diff": beta_diff,
                          "state_diff": bstate_diff, "state_digest": _digest([bs["gap_mean"], bs["gap_std"], bs["step"]])}
    print(json.dumps(report), flush=True)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
