"""DetectionExampleGen: COCO / Pascal VOC / TFRecord / class folders -> Examples artifact."""
