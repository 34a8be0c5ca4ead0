"""Inference with a trained ViLD: detect any vocabulary by name, re-score, draw, export.

  checkpoint   load_model(model_dir): a trained model from config.gin + a TF checkpoint
  spec         ModelSpec: what a client needs besides the weights (input size, scoring head)
  serving      ServingModule: raw image -> model -> boxes in original pixels (tf.functions)
  export       export_saved_model / load_saved_model: the SavedModel and its signatures
  rescoring    scoring over embeddings: re-score stored detections, attributes, crop scores
  vocabularies names / Vocabulary / .npy / matrix -> (Vocabulary, [C, D]) with a name cache
  detections   Detections: one image's results, pasted masks, JSON
  detector     Detector: the Python API over a checkpoint or a SavedModel
  images       reading image files and expanding --image specs
  visualize    drawing boxes, masks and labels
"""
