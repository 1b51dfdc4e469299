"""The machine and the versions every other section runs with."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform

#: (import name, distribution name) of every package a section uses.
PACKAGES = (("numpy", "numpy"), ("torch", "torch"), ("triton", "triton"), ("jax", "jax"), ("jaxlib", "jaxlib"),
            ("transformers", "transformers"), ("accelerate", "accelerate"), ("trl", "trl"), ("datasets", "datasets"),
            ("liger_kernel", "liger-kernel"), ("hypothesis", "hypothesis"), ("pytest", "pytest"))


def run(rec, dry: bool) -> None:
    with rec.part("versions") as p:
        versions = {"python": platform.python_version()}
        for name, dist in PACKAGES:  # found and versioned without importing (the sections import what they use)
            spec = importlib.util.find_spec(name)
            if spec is None:
                versions[name] = "missing"
                continue
            try:
                version = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                version = "?"
            versions[name] = f"{version} ({(spec.origin or '?').rsplit('/', 2)[0]})"
        p["data"] = versions
        rec.measure("env.versions", versions)
    with rec.part("gpu") as p:
        import torch

        if not torch.cuda.is_available():
            p["status"], p["detail"] = "skipped: no CUDA", "torch sees no CUDA device"
            rec.measure("env.gpu", "no GPU")
        else:
            props = torch.cuda.get_device_properties(0)
            gpu = f"{props.name}, {props.total_memory / 2**30:.0f} GiB, sm_{props.major}{props.minor}, {props.multi_processor_count} SMs"
            p["detail"] = gpu
            rec.measure("env.gpu", gpu)
            rec.measure("env.torch_cuda", torch.version.cuda)
    with rec.part("jax devices") as p:
        import jax

        devices = [str(d) for d in jax.devices()]
        p["detail"] = f"default backend {jax.default_backend()}: {devices}"
        rec.measure("env.jax_backend", jax.default_backend())
        if not dry and jax.default_backend() != "gpu":
            p["status"] = "fail"
    with rec.part("gammapo imports") as p:
        import gammapo_jax  # noqa: F401
        import gammapo_spec  # noqa: F401
        import gammapo_torch
        from gammapo_torch import _triton_calibration

        p["detail"] = f"gammapo_torch from {gammapo_torch.__file__}; triton kernel available: {_triton_calibration.HAVE_TRITON}"
