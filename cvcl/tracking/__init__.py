"""Experiment tracking (MLflow) shared by the train, infer and evaluate stages."""
