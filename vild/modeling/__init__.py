"""The ViLD model: official.vision Mask R-CNN parts plus ViLD's region tower, text classifier,
ensemble scoring and embedding-keeping post-processing."""
