"""Side-by-side benchmarks of the fleet against reference consumers and publishers (`python -m bench`)."""
