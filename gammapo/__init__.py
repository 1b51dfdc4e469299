"""gammapo — γ-PO (robust preference optimisation with dynamic per-pair target margins) and the
reward-margin losses around it, on NumPy (the reference), PyTorch and JAX.

>>> import gammapo
>>> B = gammapo.get_backend("numpy")      # or "torch", "jax"
>>> cfg = gammapo.GammaPOConfig(loss="gamma-simpo", calibration="batch")
>>> out, state = B.gamma_po_loss(cfg, B.init_state(cfg), chosen_logps=[-4.0, -8.0],
...                              rejected_logps=[-9.0, -6.0], chosen_lengths=[2, 4],
...                              rejected_lengths=[3, 3])

Importing this package never imports torch or jax: backends load when asked for.
"""

from gammapo_spec import (
    BASE_LOSSES,
    LOSS_NAMES,
    ConfigError,
    GammaPOConfig,
    GammaPOError,
    InputError,
    LossOutput,
    StateError,
)

from ._registry import (
    BackendNotFoundError,
    BackendUnavailableError,
    available_backends,
    get_backend,
    list_backends,
    register_backend,
)
from .protocol import Backend, BackendProtocolError, check_backend

__version__ = "0.1.0.dev0"

__all__ = [
    "BASE_LOSSES",
    "LOSS_NAMES",
    "Backend",
    "BackendNotFoundError",
    "BackendProtocolError",
    "BackendUnavailableError",
    "ConfigError",
    "GammaPOConfig",
    "GammaPOError",
    "InputError",
    "LossOutput",
    "StateError",
    "available_backends",
    "check_backend",
    "get_backend",
    "list_backends",
    "register_backend",
]
