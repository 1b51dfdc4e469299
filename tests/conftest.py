"""Project-wide test options, all in one place.

Hypothesis profiles (select with ``HYPOTHESIS_PROFILE=name``):

* ``ci`` (default): 40 examples per property, no deadline (shared 2-core machines are noisy);
* ``dev``: 15 examples, for quick local iterations;
* ``release``: 400 examples, derandomised, for a release run.

Hypothesis draws no literals of the imported source files in any test, as in the conformance suite
(``gammapo_conformance.plugin.exclude_local_constants``), so what a test draws does not depend on which
modules the tests before it imported.

Markers (the fast inner loop is ``python -m pytest -n 2 -m "not slow and not distributed"``):

* ``distributed``: the test starts processes that work together (torch.distributed, torchrun, FSDP,
  multi-process JAX);
* ``slow``: the test starts another process (a CLI run, an example script, a fresh interpreter, a
  wheel build) or takes more than a few seconds on a shared 2-core machine.

Files mark themselves with ``pytestmark``; :data:`SLOW` and :data:`DISTRIBUTED` below mark single tests
of files that are mostly fast. ``--report-spawns FILE`` appends to FILE every test not marked either way that started a process
(``subprocess``, ``os.fork``, ``os.posix_spawn``), to find tests that belong in :data:`SLOW` (a framework's first import may start a helper process too).
"""

from __future__ import annotations

import os
import sys
import warnings

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=15, deadline=None)
settings.register_profile(
    "release", max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

#: Tests marked ``slow``: "tests/dir/test_file.py" (every test of the file) or
#: "tests/dir/test_file.py::test_name" (the test with all its parametrisations). Measured 2026-12-02:
#: each starts a process (--report-spawns) or took over 15 s on a 2-core machine at load 15, or
#: over 2.5 s on 2 idle cores.
SLOW = frozenset({
    # the conformance suite's own entry point, each a pytest run in a child process
    "tests/conformance/test_conf_backends.py",
    "tests/conformance/test_conf_porting.py",
    "tests/conformance/test_conf_same_draws.py",
    "tests/data/test_data_cli.py::test_cli_augment_conversational_jsonl_system_mode",
    "tests/data/test_data_cli.py::test_cli_augment_system_mode_on_plain_prompts_is_a_clear_error",
    "tests/data/test_data_cli.py::test_cli_select_and_augment_datasets_directories",
    "tests/data/test_data_cli.py::test_cli_select_bad_record_names_line_and_field",
    "tests/data/test_data_cli.py::test_cli_select_baseline",
    "tests/data/test_data_cli.py::test_cli_select_jsonl_writes_the_selection_and_reports_counts",
    "tests/data/test_data_cli.py::test_cli_select_model_fills_missing_logprobs",
    "tests/data/test_data_cli.py::test_cli_select_refuses_an_existing_output",
    "tests/data/test_data_cli_options.py::test_unknown_option_is_one_line_exit_2",
    "tests/data/test_data_examples.py::test_example_augment_data",
    "tests/data/test_data_examples.py::test_example_select_data",
    "tests/data/test_data_outputs.py::test_jsonl_output_follows_the_umask",
    "tests/data/test_data_outputs.py::test_leftovers_of_a_kill_between_two_renames_are_undone",
    "tests/data/test_data_outputs.py::test_random_kills_during_overwrites_leave_a_complete_output",
    "tests/docs/test_docs_examples.py::test_docs_choose_tau_plot_is_committed_and_regenerates",
    "tests/docs/test_docs_examples.py::test_docs_example_runs",
    "tests/docs/test_docs_examples.py::test_docs_snippet_runs",
    "tests/docs/test_docs_examples.py::test_docs_snippets_print_the_same_numbers",
    "tests/frontdoor/test_bench_cli.py::test_bench_list_works_from_anywhere_with_the_checkout_installed",
    "tests/frontdoor/test_cli.py::test_cli_passthrough_subcommands_keep_their_leading_options",
    "tests/frontdoor/test_cli.py::test_cli_runs_as_module",
    "tests/frontdoor/test_cli_errors.py::test_calibrate_backend_whose_framework_is_not_installed",
    "tests/frontdoor/test_cli_errors.py::test_conformance_backend_whose_framework_is_not_installed",
    "tests/frontdoor/test_cli_errors.py::test_conformance_without_the_test_tools",
    "tests/frontdoor/test_cli_errors.py::test_version",
    "tests/frontdoor/test_quickstart.py::test_quickstart_script_trains_gamma_simpo_within_minutes",
    "tests/frontdoor/test_readme.py::test_ci_runs_the_readme_test_command",
    "tests/frontdoor/test_registry.py::test_import_gammapo_imports_neither_torch_nor_jax",
    "tests/jax/test_jax_bench_calibration.py::test_bench_calibration_jax_contenders_and_verdict",
    "tests/jax/test_jax_calibrate_margins.py::test_calibrate_margins_exact_meets_kkt_residual_float64",
    "tests/jax/test_jax_calibrate_margins.py::test_calibrate_margins_float64_matches_reference",
    "tests/jax/test_jax_cpu_kernel.py::test_kernel_and_lax_path_agree",
    "tests/jax/test_jax_cpu_kernel.py::test_without_a_compiler_the_lax_path_runs",
    "tests/jax/test_jax_example_optax.py::test_jax_gamma_po_loss_optax_example_loss_decreases",
    "tests/jax/test_jax_gamma_po_loss.py::test_jax_gamma_po_loss_float32_values_and_grads",
    "tests/methods/test_method_epsilon_dpo_bench.py::test_bench_epsilon_dpo_memory_quick_writes_results",
    "tests/perf/test_gpu_acceptance_dryrun.py::test_conformance_device_option_reaches_the_torch_backend",
    "tests/perf/test_gpu_acceptance_dryrun.py::test_dry_run_runs_every_section_and_writes_the_report",
    "tests/perf/test_gpu_acceptance_dryrun.py::test_wheel_manifest_is_exact_and_fits_the_carry_limit",
    "tests/perf/test_perf_bench_smoke.py::test_benchmarks_main_quick_fused_loss_writes_results",
    "tests/torch/test_native_cache.py::test_a_group_writable_library_is_not_loaded",
    "tests/torch/test_native_cache.py::test_a_library_planted_in_the_old_temporary_fallback_is_not_loaded",
    "tests/torch/test_native_cache.py::test_a_library_planted_without_its_record_is_rebuilt_not_loaded",
    "tests/torch/test_native_cache.py::test_a_shared_cache_folder_is_not_used",
    "tests/torch/test_native_cache.py::test_a_tampered_library_fails_its_checksum",
    "tests/torch/test_native_cache.py::test_the_cache_folder_is_created_private_and_the_library_verified",
    "tests/torch/test_torch_cpu_calibration.py::test_without_a_compiler_the_torch_ops_path_runs",
    "tests/torch/test_torch_examples.py::test_example_torch_loop_trains_and_the_loss_falls",
    "tests/torch/test_torch_state_safety.py::test_tampered_checkpoint_gives_state_error_not_a_crash",
    "tests/torch/test_torch_triton_calibration.py::test_mirror_margins_fused_under_triton_interpreter_matches_reference",
    "tests/train/test_train_cli.py::test_cli_noise_sweep_with_seeds_reports_spread",
    "tests/train/test_train_cli.py::test_cli_quick_default_prints_table_and_writes_report",
    "tests/train/test_train_cli_checks.py::test_bad_option_from_the_command_line_has_no_traceback",
    "tests/train/test_train_data_transforms_example.py::test_example_runs_with_fewer_steps_than_the_logging_interval",
    "tests/train/test_train_integrations_imports.py::test_integrations_each_module_imports_first_in_a_fresh_interpreter",
    # over 2.5 s each on 2 idle cores
    "tests/torch/test_torch_compile_and_sync.py::test_gamma_po_loss_compiles_fullgraph_without_graph_breaks_or_recompiles",
    "tests/train/test_train_cli.py::test_cli_gamma_beta_ratio_and_solver_reach_the_loss_config",
    "tests/methods/test_method_step_backends.py::test_jax_jitted_step_equals_eager_and_differentiates",
    "tests/jax/test_jax_calibrate_step.py::test_jax_calibrate_step_queue_matches_reference_over_steps",
    "tests/methods/test_method_beta_dpo_jax.py::test_jax_steps_match_spec",
    "tests/train/test_train_data_transforms.py::test_short_study_over_the_three_variants",
    "tests/train/test_train_beta_dpo.py::test_beta_dpo_resume_matches_uninterrupted_run",
    "tests/jax/test_jax_calibrate_step.py::test_jax_state_to_dict_round_trip_and_resume",
})
#: Tests marked ``distributed`` in files that are otherwise not (same form as :data:`SLOW`).
DISTRIBUTED = frozenset({
    "tests/torch/test_torch_examples.py::test_example_torch_distributed_keeps_identical_queues_on_two_ranks",
    "tests/methods/test_method_epsilon_dpo_torch.py::test_update_beta_all_reduces_over_two_gloo_ranks",
    "tests/train/test_train_trl_token_metrics.py::test_gamma_statistics_are_pooled_over_ranks",
})


def pytest_addoption(parser):
    parser.addoption("--report-spawns", metavar="FILE", default=None,
                     help="append to FILE each test not marked slow or distributed that started a process")


def pytest_configure(config):
    from gammapo_conformance.plugin import exclude_local_constants

    exclude_local_constants()
    if config.getoption("report_spawns"):
        _SPAWNS["file"] = config.getoption("report_spawns")
        sys.addaudithook(_audit)


def pytest_collection_modifyitems(config, items):
    modules = {}
    for item in items:
        path = item.nodeid.split("::")[0]
        modules.setdefault(path, getattr(item, "module", None))
        name = f"{path}::{getattr(item, 'originalname', item.name)}"
        for mark, listed in (("slow", SLOW), ("distributed", DISTRIBUTED)):
            if path in listed or name in listed:
                item.add_marker(getattr(pytest.mark, mark))
    stale = sorted(k for k in SLOW | DISTRIBUTED if "::" in k and k.split("::")[0] in modules
                   and not hasattr(modules[k.split("::")[0]], k.split("::")[1]))
    if stale:
        warnings.warn(f"tests/conftest.py SLOW names tests that do not exist (renamed?): {stale}", stacklevel=1)


# --- --report-spawns: which unmarked tests start processes -----------------------------------------

_SPAWN_EVENTS = frozenset({"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec"})
_SPAWNS: dict = {"file": None, "test": None, "seen": set()}


def _audit(event, args):
    if event in _SPAWN_EVENTS and _SPAWNS["test"] is not None:
        _SPAWNS["seen"].add(event)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if _SPAWNS["file"] is None or item.get_closest_marker("slow") or item.get_closest_marker("distributed"):
        yield
        return
    _SPAWNS["test"], _SPAWNS["seen"] = item.nodeid, set()
    try:
        yield
    finally:
        if _SPAWNS["seen"]:
            with open(_SPAWNS["file"], "a", encoding="utf-8") as f:
                f.write(f"{item.nodeid}\t{','.join(sorted(_SPAWNS['seen']))}\n")
        _SPAWNS["test"] = None
