"""Run as a script by test_jax_sharding.py, in a fresh interpreter with 4 forced host devices
(``XLA_FLAGS`` must be set before jax is imported). Prints one JSON line of max differences."""

from __future__ import annotations

import json
import os

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from gammapo_spec import GammaPOConfig  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import gammapo_jax as G  # noqa: E402


def main() -> None:
    assert jax.device_count() == 4, jax.devices()
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    rng = np.random.default_rng(0)
    report = {"devices": jax.device_count()}
    for mode in ("batch", "queue"):
        cfg = GammaPOConfig(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=1.0, calibration=mode,
                            queue_size=32, sample_size=24, queue_warmup=8)
        gather = G.AxisGather("data")

        def sharded(state, c, r, lc, lr):
            out, new_state = G.gamma_po_loss(cfg, state, chosen_logps=c, rejected_logps=r, chosen_lengths=lc,
                                             rejected_lengths=lr, gather=gather)
            return out.margins, new_state

        state_spec = None if mode == "batch" else P()
        f = jax.jit(jax.shard_map(sharded, mesh=mesh, in_specs=(state_spec, P("data"), P("data"), P("data"), P("data")),
                                  out_specs=(P("data"), state_spec)))
        s_sh = G.init_state(cfg, seed=5, dtype="float64")
        s_un = G.init_state(cfg, seed=5, dtype="float64")
        diffs, book = [], True
        for _ in range(3):
            c, r = (jnp.asarray(-rng.uniform(1, 30, 8)) for _ in range(2))
            lc, lr = (jnp.asarray(rng.integers(1, 20, 8).astype(np.float64)) for _ in range(2))
            m_sh, s_sh = f(s_sh, c, r, lc, lr)
            out, s_un = G.gamma_po_loss(cfg, s_un, chosen_logps=c, rejected_logps=r, chosen_lengths=lc, rejected_lengths=lr)
            diffs.append(float(jnp.max(jnp.abs(m_sh - out.margins))))
            if mode == "queue":
                d_sh, d_un = G.state_to_dict(s_sh), G.state_to_dict(s_un)
                book &= all(d_sh[k] == d_un[k] for k in ("size", "head", "step", "seed"))
                diffs.append(float(np.max(np.abs(d_sh["buffer"] - d_un["buffer"]))))
        report[mode] = {"max_diff": max(diffs), "bookkeeping_equal": bool(book),
                        "margins_spread": float(jnp.std(out.margins))}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
