"""The PyTorch backend of gammapo (work in progress: see issue 3)."""
