"""The QLoRA training plugin, installed as `curate.train`."""
