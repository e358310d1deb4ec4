"""Model backends: one interface (`ModelBackend`), several ways to run the model."""
