"""The JAX backend of gammapo (work in progress: see issue 4)."""
