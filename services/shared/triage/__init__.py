"""The triage model bundle soc-cycle scores with and ml-retrain trains: the features
(features.py), the bundle and its scoring (bundle.py), and the reader of the model
registry with every safety check of a load (registry.py)."""
