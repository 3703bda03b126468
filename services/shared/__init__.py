"""Libraries that more than one service uses and no engine owns (an engine never imports
another engine; DESIGN.md): ``egress`` (where a service may connect to), ``triage`` (the
SOC's model bundle and features, trained by ml-retrain), ``frontend_kit`` (the factory's
component library and the files it owns in the frontend tree)."""
