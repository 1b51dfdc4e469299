r"""The GPU acceptance run: one command that checks and times the CUDA, Triton and JAX-GPU paths.

Run from the repository root (no install needed; the missing packages come as wheels)::

    python3 -m scripts.gpu_acceptance OUT_DIR --wheels .whl          # on the GPU machine (≤ 6 minutes)
    python -m scripts.gpu_acceptance OUT_DIR --dry-run               # anywhere: tiny sizes, CPU

It writes ``OUT_DIR/gpu_acceptance.md`` (the targets table and every section), ``gpu_acceptance.json``
(all measurements) and ``gpu_acceptance.log`` (each section's output). Every section runs in its own
process with its own time budget, so a crash, a hang or a missing package in one is reported and the
others still run. ``--dry-run`` uses tiny sizes and the CPU: every import, option, section, output file
and table is exercised, the parts that need CUDA are reported as "skipped: no CUDA", and the targets
stay "pending". ``scripts/gpu_wheels.txt`` lists the wheels the GPU image lacks and the command line.
"""

#: Sections in the order they are reported.
SECTIONS = ("environment", "cuda_tests", "conformance_torch", "conformance_jax", "sync_and_graphs",
            "calibration_timings", "fused_loss", "trainer_step", "parallel_trainer")
#: These run side by side first (correctness checks, no timings; parallel_trainer's runs are short trainings).
PARALLEL = ("cuda_tests", "conformance_torch", "conformance_jax", "parallel_trainer")
#: Seconds each section may take on the GPU machine (under 6 minutes in all: the side-by-side ones count once).
BUDGETS = {"environment": 20, "cuda_tests": 90, "conformance_torch": 90, "conformance_jax": 90,
           "sync_and_graphs": 40, "calibration_timings": 90, "fused_loss": 60, "trainer_step": 60,
           "parallel_trainer": 90}
#: The same for ``--dry-run`` on a small CPU machine.
DRY_BUDGETS = {name: 150 for name in SECTIONS}
