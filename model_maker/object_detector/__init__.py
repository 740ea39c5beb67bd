"""EfficientDet-Lite object detection: specs, model, anchors, losses, input pipeline, export."""
