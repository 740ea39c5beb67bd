"""Dataset ingestion: readers (COCO, Pascal VOC, TFRecord, class folders), image checks,
the tf.train.Example contract, the deterministic split and the Beam ingestion pipeline."""
