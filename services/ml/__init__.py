"""ML Training Pipeline (`ml-retrain`)."""
