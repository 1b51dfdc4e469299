"""Peak memory and time of the fused γ-SimPO loss at V = 128k against the unfused loss and Liger's SimPO.

Sizes: V = 131072, H = 4096, B = 2 pairs, T ∈ {1024, 2048} tokens per response (every token scored),
bf16 hidden states and LM head, γ-SimPO with the released recipe and queue calibration. Variants in one
process: ``unfused`` (full logits), ``fused`` at the default chunk size and at 2048, and Liger-Kernel's
``LigerFusedLinearSimPOLoss`` (constant margin γ0, ``compiled=True``) when its wheel is installed. Memory:
``torch.cuda.max_memory_allocated`` over one forward+backward minus what was allocated before it (inputs
and the LM head excluded; logits, softmax buffers and the gradients of W and the hidden states included).
Time: CUDA events around forward+backward, one warm-up step, then interleaved rounds; median. Dry run: tiny
sizes on the CPU (time only).
"""

from __future__ import annotations

from ._child import cuda, median


def _variants(x, liger_ok: bool, on_cuda: bool) -> dict:
    import torch

    from gammapo_torch.fused_loss import DEFAULT_CHUNK_SIZE, fused_gamma_po_loss, unfused_gamma_po_loss

    common = dict(chosen_hidden=x["hw"], rejected_hidden=x["hl"], weight=x["w"], chosen_labels=x["yw"], rejected_labels=x["yl"])
    fns = {
        "unfused": lambda: unfused_gamma_po_loss(x["cfg"], x["state"], **common)[0].loss,
        f"fused@{DEFAULT_CHUNK_SIZE}": lambda: fused_gamma_po_loss(x["cfg"], x["state"], **common, chunk_size=DEFAULT_CHUNK_SIZE)[0].loss,
        "fused@2048": lambda: fused_gamma_po_loss(x["cfg"], x["state"], **common, chunk_size=2048)[0].loss,
    }
    if liger_ok:
        from liger_kernel.chunked_loss import LigerFusedLinearSimPOLoss

        liger = LigerFusedLinearSimPOLoss(beta=x["cfg"].beta, gamma=x["cfg"].gamma0, compute_nll_loss=False, compiled=on_cuda)
        target = torch.cat([x["yw"], x["yl"]])
        x["liger_hidden"] = torch.cat([x["hw"].detach(), x["hl"].detach()]).requires_grad_(True)

        def liger_loss():
            out = liger(x["w"], x["liger_hidden"], target)
            return out[0] if isinstance(out, tuple) else out

        fns["liger SimPO (constant margin)"] = liger_loss
    return fns, DEFAULT_CHUNK_SIZE


def _step(x, fn, on_cuda: bool) -> tuple[float, float | None, float]:
    """One forward+backward: (ms, peak extra MiB or None, loss)."""
    import time

    import torch

    for k in ("hw", "hl", "w", "liger_hidden"):
        if k in x:
            x[k].grad = None
    if on_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        loss = fn()
        loss.backward()
        end.record()
        end.synchronize()
        return start.elapsed_time(end), (torch.cuda.max_memory_allocated() - before) / 2**20, float(loss.detach())
    t = time.perf_counter()
    loss = fn()
    loss.backward()
    return (time.perf_counter() - t) * 1e3, None, float(loss.detach())


def run(rec, dry: bool) -> None:
    import torch

    import gammapo_spec as R
    import gammapo_torch as T

    on_cuda = cuda()
    device = "cuda" if on_cuda else "cpu"
    vocab, hidden, pairs = (512, 32, 2) if dry else (131072, 4096, 2)
    lengths, rounds = ((16,) if dry else (1024, 2048)), (2 if dry else 3)
    try:
        from liger_kernel.chunked_loss import LigerFusedLinearSimPOLoss  # noqa: F401

        liger_ok, liger_note = True, ""
    except Exception as exc:  # noqa: BLE001
        liger_ok, liger_note = False, f"{type(exc).__name__}: {exc}"
    if not liger_ok:
        rec.skip("liger", f"skipped: Liger-Kernel not importable ({liger_note[:200]})")
    rows = []
    for t in lengths:
        with rec.part(f"V={vocab} H={hidden} B={pairs} T={t} bf16") as p:
            g = torch.Generator().manual_seed(0)
            cfg = R.GammaPOConfig(loss="gamma-simpo", check_values=False)

            def make(*shape):
                return torch.randn(*shape, generator=g).to(device=device, dtype=torch.bfloat16)

            x = {"hw": make(pairs, t, hidden).requires_grad_(True), "hl": make(pairs, t, hidden).requires_grad_(True),
                 "w": (make(vocab, hidden) * hidden**-0.5).detach().requires_grad_(True),
                 "yw": torch.randint(0, vocab, (pairs, t), generator=g).to(device),
                 "yl": torch.randint(0, vocab, (pairs, t), generator=g).to(device),
                 "cfg": cfg, "state": T.init_state(cfg, seed=0, device=device)}
            fns, chunk = _variants(x, liger_ok, on_cuda)
            times: dict = {k: [] for k in fns}
            peaks: dict = {k: [] for k in fns}
            losses: dict = {}
            errors: dict = {}
            for k, fn in fns.items():  # warm-up (and Liger's compilation)
                try:
                    losses[k] = _step(x, fn, on_cuda)[2]
                except Exception as exc:  # noqa: BLE001
                    errors[k] = f"{type(exc).__name__}: {exc}"[:300]
                    if on_cuda:
                        torch.cuda.empty_cache()
            live = [k for k in fns if k not in errors]
            for r in range(rounds):
                for k in live[r % len(live):] + live[: r % len(live)]:
                    ms, peak, _ = _step(x, fns[k], on_cuda)
                    times[k].append(ms)
                    peaks[k].append(peak)
            fused, base, lig = f"fused@{chunk}", "unfused", "liger SimPO (constant margin)"
            for k in live:
                mem = max(peaks[k]) if on_cuda else None
                rows.append([t, k, f"{median(times[k]):.2f}", "—" if mem is None else f"{mem:.0f}",
                             f"{median(times[k]) / median(times[base]):.3f}" if base in live else "—",
                             "—" if mem is None or base not in live else f"{mem / max(peaks[base]):.3f}", f"{losses[k]:.5f}"])
            rows += [[t, k, "error", e, "—", "—", "—"] for k, e in errors.items()]
            if on_cuda and fused in live and base in live:
                rec.measure(f"fused.{t}.mem_ratio", max(peaks[fused]) / max(peaks[base]))
                rec.measure(f"fused.{t}.time_ratio", median(times[fused]) / median(times[base]))
                if lig in live:
                    rec.measure(f"fused.{t}.liger_mem_ratio", max(peaks[fused]) / max(peaks[lig]))
                    rec.measure(f"fused.{t}.liger_time_ratio", median(times[fused]) / median(times[lig]))
            if fused in live and base in live:
                rel = abs(losses[fused] - losses[base]) / max(abs(losses[base]), 1e-12)
                p["data"]["fused_vs_unfused_loss_rel_diff"] = rel
                if rel > 2e-2:  # bf16 logits: the two paths round differently, but not by percents
                    p["status"] = "fail"
            p["detail"] = ", ".join(f"{k} {median(times[k]):.1f} ms" for k in live) + (f"; errors: {errors}" if errors else "")
            if errors and p["status"] == "ok":
                p["status"] = "fail"
            rec.table("Fused γ-SimPO loss, forward+backward", ["T", "variant", "median ms", "peak extra MiB",
                      "time / unfused", "memory / unfused", "loss"], rows)
            del x, fns
            if on_cuda:
                torch.cuda.empty_cache()
