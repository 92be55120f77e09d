"""Segmentation data: datasets behind one `--data` spec, the synthetic data, the VOC palette, the
evaluation transform and the paper's training augmentation."""
