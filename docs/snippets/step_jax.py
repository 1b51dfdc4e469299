"""One γ-SimPO step with the JAX backend: a pure function, differentiated and compiled by JAX."""

import jax

jax.config.update("jax_enable_x64", True)  # float64, to print the same digits as the reference

import jax.numpy as jnp  # noqa: E402

import gammapo  # noqa: E402

B = gammapo.get_backend("jax")
cfg = gammapo.GammaPOConfig(loss="gamma-simpo", beta=10.0, gamma_beta_ratio=0.4, tau=10.0, calibration="batch")
rest = dict(
    rejected_logps=jnp.array([-55.0, -50.0, -30.0, -80.0]),
    chosen_lengths=jnp.array([20, 26, 15, 30]),
    rejected_lengths=jnp.array([22, 25, 16, 31]),
)


def loss_fn(chosen_logps):
    out, _ = B.gamma_po_loss(cfg, B.init_state(cfg), chosen_logps=chosen_logps, **rest)
    return out.loss, out


(loss, out), grad = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(jnp.array([-40.0, -52.0, -31.0, -64.0]))

print("loss", round(float(loss), 6))
print("margins", [round(float(v), 6) for v in out.margins])
print("d loss / d chosen_logps", [round(float(v), 6) for v in grad])
