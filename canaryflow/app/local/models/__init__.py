"""Model code that the demo and tests register in MLflow (logged as code, never pickled)."""
