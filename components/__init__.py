"""Thin TFX components over model_maker."""
