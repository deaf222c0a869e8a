"""Developer tools of the textenv repository (not installed with the package)."""
