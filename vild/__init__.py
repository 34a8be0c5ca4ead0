"""vild: open-vocabulary detection by Vision and Language knowledge Distillation (ViLD).

A Mask R-CNN built from the Model Garden's `official.vision` parts whose classifier is the
cosine similarity to precomputed CLIP text embeddings (ViLD-text), with a region-embedding
distillation loss against offline CLIP image embeddings of proposals (ViLD-image).

Where ViLD differs from Mask R-CNN the code lives in a module named for it:
  vild.vocabulary              category names, frequencies and the base/novel split
  vild.text_embeddings         text-embedding matrix files (.npy + sidecar JSON), checks
  vild.modeling.region_tower   RoI features -> L2-normalised region embeddings
  vild.modeling.text_classifier  cosine classifier over frozen text embeddings + learned bg
  vild.modeling.ensemble       ViLD-ensemble geometric score fusion
  vild.modeling.detection_generator  NMS that keeps each detection's region embedding
  vild.modeling.vild_model     the model's forward pass, one screen, in paper order
  vild.losses                  ViLD-text cross-entropy and ViLD-image L1 distillation
"""
__version__ = "0.1.0"
