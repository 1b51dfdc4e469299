"""Checkout entry point: ``pytest conformance --backend torch``.

Adds ``--backend`` (only here, never in the plugin, so an auto-loaded plugin cannot clash) and
registers :mod:`gammapo_conformance.plugin` unless pytest already loaded it (``-p`` or entry point).
"""

from __future__ import annotations

import gammapo_conformance.plugin as _plugin


def pytest_addoption(parser, pluginmanager):
    parser.addoption("--backend", default=None, help="conformance backend: registry NAME or MODULE:ATTR")
    _plugin._STATE["checkout_backend"] = True
    if not pluginmanager.is_registered(_plugin):
        pluginmanager.register(_plugin, "gammapo_conformance.plugin")
