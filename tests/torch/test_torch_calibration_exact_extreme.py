"""The torch exact solver on gaps where one entry is pinned at the log-ratio cap (the spec's rtsafe case)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gammapo  # noqa: E402
from gammapo_spec import calibrate_margins, kkt_residual  # noqa: E402


@pytest.mark.parametrize(
    "gaps, gamma0, tau",
    [([1e4, -1.32e-4], 100.0, 0.1), ([1e4, 0.3, -2.0], 100.0, 0.05), ([1e4, -1e4, 5.0], 1000.0, 1.0)],
)
def test_torch_exact_solver_matches_the_spec_when_an_entry_sits_at_the_cap(gaps, gamma0, tau):
    backend = gammapo.get_backend("torch")
    got = backend.to_numpy(backend.calibrate_margins(torch.tensor(gaps, dtype=torch.float64), gamma0=gamma0,
                                                     tau=tau, solver="exact"))
    want = calibrate_margins(np.asarray(gaps), gamma0=gamma0, tau=tau, solver="exact")
    assert np.max(np.abs(got - want)) <= 1e-10 * (1.0 + gamma0), (got, want)
    assert got.mean() == pytest.approx(gamma0, rel=1e-12)
    if np.all(want > 0):
        assert kkt_residual(np.asarray(gaps), got, gamma0=gamma0, tau=tau) <= 1e-10
