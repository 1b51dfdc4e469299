r"""Throughput of one γ-PO loss step (forward + backward to the log-probs) per backend and batch size.

Run: ``python -m benchmarks loss_throughput`` (about a minute on 2 cores) or ``--quick``. Writes
``benchmarks/results/loss_throughput.{md,json,png}``.

Backends, all on the released recipe (γ-SimPO, β = 10, γ0/β = 0.4, τ = 10, queue calibration with
256 gaps, mirror solver, K = 20):

* ``numpy`` — the reference :func:`gammapo_spec.gamma_po_loss`, **value only** (NumPy has no
  autodiff; :func:`gammapo_spec.loss_vjp` would add a second pass), float64;
* ``torch`` — :func:`gammapo_torch.gamma_po_loss` + ``loss.backward()`` to leaf log-probs, eager,
  float32, CPU;
* ``jax`` — ``jax.jit(jax.value_and_grad(...))`` of :func:`gammapo_jax.gamma_po_loss`, float32, CPU
  (compiled once per batch size before timing; ``block_until_ready`` ends each call).

Method: every call starts from the same initial state (the queue is not advanced, so each call
does identical work). For each batch size the backends run interleaved in rounds of ``calls`` calls
each; every call is timed on its own (``time.perf_counter``). Reported: median per-call latency with
its interquartile range, and throughput = pairs / median latency.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

from benchmarks._perf_common import machine_info, machine_line, markdown_table, stats, write_results

NAME = "loss_throughput"
FULL = {"sizes": (8, 64, 512, 4096), "rounds": 6, "calls": 10}
QUICK = {"sizes": (8, 64), "rounds": 2, "calls": 3}


def _config():
    from gammapo_spec import GammaPOConfig

    return GammaPOConfig(loss="gamma-simpo")


def _inputs(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    return {
        "chosen_logps": -np.abs(rng.normal(30.0, 10.0, n)) - 1.0,
        "rejected_logps": -np.abs(rng.normal(40.0, 10.0, n)) - 1.0,
        "chosen_lengths": rng.integers(10, 200, n).astype(np.float64),
        "rejected_lengths": rng.integers(10, 200, n).astype(np.float64),
    }


def _numpy_step(n: int) -> Callable[[], None]:
    import gammapo_spec as R

    cfg, x = _config(), _inputs(n)
    state = R.init_state(cfg, seed=0)
    return lambda: R.gamma_po_loss(cfg, state, **x)


def _torch_step(n: int) -> Callable[[], None]:
    import torch

    import gammapo_torch as T

    cfg, x = _config(), _inputs(n)
    state = T.init_state(cfg, seed=0)
    c = torch.tensor(x["chosen_logps"], dtype=torch.float32)
    r = torch.tensor(x["rejected_logps"], dtype=torch.float32)
    lw = torch.tensor(x["chosen_lengths"], dtype=torch.int64)
    ll = torch.tensor(x["rejected_lengths"], dtype=torch.int64)

    def step():
        cc, rr = c.detach().requires_grad_(), r.detach().requires_grad_()
        out, _ = T.gamma_po_loss(cfg, state, chosen_logps=cc, rejected_logps=rr, chosen_lengths=lw, rejected_lengths=ll)
        out.loss.backward()

    return step


def _jax_step(n: int) -> Callable[[], None]:
    import jax
    import jax.numpy as jnp

    import gammapo_jax as J

    cfg, x = _config(), _inputs(n)
    state = J.init_state(cfg, seed=0)
    args = [jnp.asarray(x[k], dtype=jnp.float32) for k in ("chosen_logps", "rejected_logps")]
    lengths = [jnp.asarray(x[k], dtype=jnp.int32) for k in ("chosen_lengths", "rejected_lengths")]

    def loss(c, r, lw, ll, st):
        out, new_state = J.gamma_po_loss(cfg, st, chosen_logps=c, rejected_logps=r, chosen_lengths=lw, rejected_lengths=ll)
        return out.loss, new_state

    fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
    jax.block_until_ready(fn(*args, *lengths, state))  # compile outside the timing
    return lambda: jax.block_until_ready(fn(*args, *lengths, state))


BACKENDS: dict[str, Callable[[int], Callable[[], None]]] = {"numpy": _numpy_step, "torch": _torch_step, "jax": _jax_step}


def measure(sizes: dict[str, Any], log=print) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Per (backend, N): latency statistics and throughput; plus the backends that could not run."""
    skipped: dict[str, str] = {}
    rows = []
    for n in sizes["sizes"]:
        steps = {}
        for name, make in BACKENDS.items():
            if name in skipped:
                continue
            try:
                steps[name] = make(n)
                for _ in range(2):
                    steps[name]()  # warm-up
            except ImportError as exc:
                skipped[name] = f"{type(exc).__name__}: {exc}"
                log(f"  skip {name}: {skipped[name]}")
        times: dict[str, list[float]] = {k: [] for k in steps}
        for _ in range(sizes["rounds"]):
            for name, step in steps.items():
                for _ in range(sizes["calls"]):
                    start = time.perf_counter()
                    step()
                    times[name].append(time.perf_counter() - start)
        for name, t in times.items():
            s = stats(t)
            rows.append({"backend": name, "pairs": n, "latency_s": s, "pairs_per_s": n / s["median"]})
            log(f"  N={n:5d} {name:6s} median {1e3 * s['median']:.3f} ms (IQR {1e3 * s['q1']:.3f}–{1e3 * s['q3']:.3f}), "
                f"{n / s['median']:.0f} pairs/s")
    return rows, skipped


def _plot(rows, path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name in dict.fromkeys(r["backend"] for r in rows):
        these = [r for r in rows if r["backend"] == name]
        ax.plot([r["pairs"] for r in these], [r["pairs_per_s"] for r in these], marker="o", label=name)
    ax.set(xscale="log", yscale="log", xlabel="pairs per batch", ylabel="pairs / s (median)",
           title="γ-SimPO loss fwd+bwd, CPU (no GPU)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (``--quick``: small sizes; ``--out DIR``); returns 0."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_loss_throughput", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    machine = machine_info()
    print(f"[{NAME}] {machine_line(machine)}", flush=True)
    rows, skipped = measure(sizes, lambda s: print(s, flush=True))
    lines = [
        "# γ-PO loss forward+backward throughput per backend (CPU)",
        "",
        f"Machine: {machine_line(machine)}. No GPU was available: no GPU numbers are reported.",
        "",
        "γ-SimPO, released recipe (β = 10, γ0/β = 0.4, τ = 10, queue calibration on 256 gaps, mirror K = 20). "
        "numpy = reference, value only (float64); torch = eager + backward (float32); jax = jit(value_and_grad) "
        f"(float32). {sizes['rounds']} interleaved rounds × {sizes['calls']} calls per backend and size; each call "
        "timed alone, same initial state every call." + (" **Quick mode.**" if args.quick else ""),
        "",
    ]
    lines += markdown_table(
        ["pairs", "backend", "median latency ms", "IQR ms", "pairs / s"],
        [[r["pairs"], r["backend"], f"{1e3 * r['latency_s']['median']:.3f}",
          f"{1e3 * r['latency_s']['q1']:.3f}–{1e3 * r['latency_s']['q3']:.3f}", f"{r['pairs_per_s']:.0f}"] for r in rows],
    )
    lines += [
        "",
        "For N < 256 each step also samples 256 − N stored gaps from the queue (the calibration set has 256 gaps); "
        "from N = 256 on the calibration set is the batch itself and no sampling happens, which is why a larger "
        "batch can be faster per call. Eager torch pays a launch cost per small op (about 100 per step), which "
        "dominates at these sizes; see `step_overhead.md` for the same loss under `torch.compile`.",
    ]
    if skipped:
        lines += [""] + [f"- {k} skipped: {v}" for k, v in skipped.items()]
    paths = write_results(NAME, args.out, lines, {"machine": machine, "sizes": sizes, "rows": rows, "skipped": skipped})
    png = _plot(rows, paths[0].with_suffix(".png"))
    print(f"[{NAME}] wrote {', '.join(map(str, paths + ([png] if png else [])))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
