"""Checkout entry point: ``pytest conformance --backend torch``.

Adds ``--backend`` (only here, never in the plugin, so an auto-loaded plugin cannot clash) and
registers :mod:`gammapo_conformance.plugin` unless pytest already loaded it (``-p`` or entry point).
``GAMMAPO_CONFORMANCE_DEVICE`` (e.g. ``cuda``) runs the torch backend on that device (see
:func:`pytest_configure`); it applies to ``gammapo conformance`` runs too, which load this file.
"""

from __future__ import annotations

import pytest

import gammapo_conformance.plugin as _plugin


def pytest_addoption(parser, pluginmanager):
    parser.addoption("--backend", default=None, help="conformance backend: registry NAME or MODULE:ATTR")
    _plugin._STATE["checkout_backend"] = True
    if not pluginmanager.is_registered(_plugin):
        pluginmanager.register(_plugin, "gammapo_conformance.plugin")


def pytest_configure(config):
    """``GAMMAPO_CONFORMANCE_DEVICE=cuda`` (any torch device name): the torch backend's arrays, states and
    every tensor the suite creates without a device are made there (``torch.set_default_device``), so the
    suite checks the backend on that device. Other backends ignore it."""
    import os

    device = os.environ.get("GAMMAPO_CONFORMANCE_DEVICE")
    if not device:
        return
    import torch

    torch.set_default_device(device)
    made = torch.empty(0).device
    if made.type != torch.device(device).type:  # pragma: no cover - torch refused the device
        raise pytest.UsageError(f"GAMMAPO_CONFORMANCE_DEVICE={device!r}: torch creates tensors on {made} instead")
