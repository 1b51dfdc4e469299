"""No host synchronisation on the training path, the Triton kernel chosen and exact, and CUDA graphs.

* **Triton**: on CUDA the mirror calibration of up to 4096 gaps must run the fused kernel (the
  profiler must see ``_mirror_kernel``) and match the spec's mirror (float64 1e-12, float32 2e-5).
* **Syncs**: each path runs under ``torch.cuda.set_sync_debug_mode("warn")`` (every synchronisation
  counted, with the calling lines) and again under ``"error"`` (the target: nothing raised): queue steps
  with the default solver and with the released mirror (forward and backward), the fused loss
  forward+backward, and one ``GammaPOTrainer.compute_loss``. Without CUDA the bodies still run on the
  CPU and the value reads through ``Tensor`` (``item``, ``tolist``, ``bool`` …) are counted as a preview.
* **CUDA graphs**: the queue step (both solvers) captured once, replayed on new gaps, equal to eager steps.
"""

from __future__ import annotations

import numpy as np

from ._child import NO_CUDA, cuda, cuda_syncs, host_reads, raises_in_error_mode
from ._workloads import QUEUE, graph_step, loss_batch, tiny_trainer


def _triton(rec) -> None:
    import torch

    import gammapo_spec as R
    import gammapo_torch as T
    from gammapo_torch import _triton_calibration as K

    with rec.part("triton kernel chosen and matching the spec") as p:
        worst, seen = {}, {}
        for n in (1, 256, 1024, 4096):
            for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-5)):
                h = np.random.default_rng(n).normal(scale=3.0, size=n)
                hc = torch.tensor(h, dtype=dtype, device="cuda")
                assert K.use_fused(hc), f"the fused kernel is not selected for {n} {dtype} gaps"
                try:  # the profiler names the kernels that ran (where CUPTI works; else selection alone is checked)
                    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                        got = T.calibrate_margins(hc, gamma0=4.0, tau=10.0, solver="mirror", check_values=False)
                        torch.cuda.synchronize()
                    names = " ".join(e.key for e in prof.key_averages())
                    seen[f"{n}/{str(dtype)[6:]}"] = "_mirror_kernel" in names
                except Exception as exc:  # noqa: BLE001
                    got = T.calibrate_margins(hc, gamma0=4.0, tau=10.0, solver="mirror", check_values=False)
                    seen[f"{n}/{str(dtype)[6:]}"] = f"profiler unavailable: {type(exc).__name__}"
                want = R.calibrate_margins(h, gamma0=4.0, tau=10.0, solver="mirror")
                err = float(np.max(np.abs(got.double().cpu().numpy() - want) / (tol * (1 + np.abs(want)))))
                worst[f"{n}/{str(dtype)[6:]}"] = err
        p["data"] = {"error_over_tolerance": worst, "kernel_seen_by_profiler": seen}
        missed = [k for k, v in seen.items() if v is False]
        p["detail"] = f"worst error / tolerance {max(worst.values()):.3g}; profiler saw _mirror_kernel: " + (
            f"not for {missed}" if missed else str(set(map(str, seen.values()))))
        ok = max(worst.values()) <= 1.0 and not missed
        p["status"] = "ok" if ok else "fail"
        rec.measure("triton.ok", ok)


def _check(rec, name: str, body, on_cuda: bool) -> None:
    """Count the syncs of ``body`` (then the error-mode verdict); on a CPU, the host reads."""
    with rec.part(f"no host sync: {name}") as p:
        body()  # warm-up: first calls compile kernels and may synchronise
        if not on_cuda:
            with host_reads() as reads:
                body()
            p["status"] = NO_CUDA
            p["detail"] = f"the body ran on the CPU; {len(reads)} value reads through Tensor: {sorted(set(reads))[:6]}"
            rec.measure(f"sync.{name}.cpu_host_reads", len(reads))
            return
        with cuda_syncs() as sites:
            body()
        error = raises_in_error_mode(body)
        p["data"] = {"syncs": len(sites), "sites": sites[:20], "error_mode": error}
        p["detail"] = f"{len(sites)} synchronisations" + (f", first at {sites[0]}" if sites else "")
        p["status"] = "ok" if not sites and error is None else "fail"
        rec.measure(f"sync.{name}", len(sites))
        rec.measure(f"sync.{name}.sites", sorted(set(sites))[:10])


def _graphs(rec) -> None:
    import torch

    import gammapo_torch as T

    for solver in ("exact", "mirror"):
        with rec.part(f"CUDA graph: queue step, {solver} solver") as p:
            config = QUEUE.replace(solver=solver)
            state = T.init_state(config, seed=1, device="cuda")
            graph, static_h, gamma, static_state = graph_step(config, state, 16)
            eager, worst = state, 0.0
            for i in range(5):
                h = torch.randn(16, device="cuda", generator=torch.Generator(device="cuda").manual_seed(i))
                static_h.copy_(h)
                graph.replay()
                g_e, eager = T.calibrate_step(config, eager, h)
                worst = max(worst, float((gamma - g_e).abs().max()))
                for a, b in zip(static_state, eager):
                    assert torch.equal(a.to(b.dtype), b), "the replayed state differs from the eager state"
            p["detail"] = f"5 replays; margins within {worst:.2e} of eager steps; states equal"
            p["status"] = "ok" if worst <= 1e-5 else "fail"
            rec.measure(f"graph.{solver}.max_diff", worst)


def run(rec, dry: bool) -> None:
    import torch

    import gammapo_torch as T
    from gammapo_torch.fused_loss import fused_gamma_po_loss

    on_cuda = cuda()
    device = "cuda" if on_cuda else "cpu"
    if on_cuda:
        _triton(rec)
    else:
        rec.skip("triton kernel chosen and matching the spec")

    for solver in ("exact", "mirror"):
        config = QUEUE.replace(solver=solver)
        holder = {"state": T.init_state(config, seed=3, device=device)}
        batches = [loss_batch(16, s, device) for s in range(3)]

        def queue_steps(config=config, holder=holder, batches=batches):
            for x in batches:
                out, holder["state"] = T.gamma_po_loss(config, holder["state"], **x)
                out.loss.backward()

        _check(rec, f"queue steps ({solver})", queue_steps, on_cuda)

    g = torch.Generator().manual_seed(0)
    b, t, h, v = 2, 64, 64, 1000
    hw, hl = (torch.randn(b, t, h, generator=g).to(device).requires_grad_(True) for _ in range(2))
    w = (torch.randn(v, h, generator=g) * h**-0.5).to(device).requires_grad_(True)
    yw, yl = (torch.randint(0, v, (b, t), generator=g).to(device) for _ in range(2))
    fused_state = {"state": T.init_state(QUEUE, seed=0, device=device)}

    def fused():
        out, fused_state["state"] = fused_gamma_po_loss(QUEUE, fused_state["state"], chosen_hidden=hw, rejected_hidden=hl,
                                                        weight=w, chosen_labels=yw, rejected_labels=yl, chunk_size=32)
        out.loss.backward()

    _check(rec, "fused loss fwd+bwd", fused, on_cuda)

    try:
        trainer, inputs = tiny_trainer(on_cuda)
    except Exception as exc:  # noqa: BLE001 - no TRL: reported, the rest still runs
        with rec.part("no host sync: GammaPOTrainer.compute_loss"):
            raise RuntimeError(f"could not build the trainer: {exc}") from exc
    else:
        model = trainer.model

        def compute_loss():
            trainer.compute_loss(model, inputs).backward()

        def loss_only():  # the pair loss on log-probs alone (no model forward, no logging)
            batch = trainer.pair_batch(model, inputs)
            trainer.pair_loss(batch).loss.backward()

        _check(rec, "GammaPOTrainer.compute_loss", compute_loss, on_cuda)
        _check(rec, "GammaPOTrainer pair_batch + pair loss (no logging)", loss_only, on_cuda)

    if on_cuda:
        _graphs(rec)
    else:
        for solver in ("exact", "mirror"):
            rec.skip(f"CUDA graph: queue step, {solver} solver")
