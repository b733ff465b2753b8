"""Stored runs: the store (`store`), one runner per run (`leases`), a run's checkpoints
(`history`), and the service every front end goes through (`service`)."""
