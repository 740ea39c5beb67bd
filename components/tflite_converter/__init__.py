"""TFLiteConverter: float, PTQ int8 and QAT int8 TFLite detectors with labels and a manifest."""
