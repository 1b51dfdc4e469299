"""Command-line entry point (placeholder, replaced below)."""
def main(argv=None):
    return 0
