"""Data: synthetic offline tasks, loaders for real datasets, and exports between the two."""
