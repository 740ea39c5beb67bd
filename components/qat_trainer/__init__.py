"""QATTrainer: quantization-aware fine-tuning of the Trainer's float model (TFMOT fake quant)."""
