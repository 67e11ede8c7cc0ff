"""Runtime services used by every layer above `io`: device choice, the Ray session, fault injection
(tests), and experiment tracking (MLflow; only the stage layer imports `tracking`)."""
