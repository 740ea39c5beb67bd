"""Trainer: float EfficientDet-Lite training on the Examples; Model and ModelRun out."""
