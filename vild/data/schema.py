"""The tf.Example keys of a ViLD record: the one place every writer and reader takes them from.

The keys are the official ViLD release's (VILD.md, "Data keys of the official tf.Example"):
the standard Model Garden detection keys, the LVIS federated-annotation keys, and the
distillation keys that carry precomputed proposals and their teacher (CLIP) image embeddings in
the same example as the image. Boxes are normalised to [0, 1] by the image size.
"""

# Image.
ENCODED = "image/encoded"
FORMAT = "image/format"
SOURCE_ID = "image/source_id"
FILENAME = "image/filename"
HEIGHT = "image/height"
WIDTH = "image/width"

# Objects: one entry per annotation. Class labels are dataset category ids (LVIS/COCO ids),
# never classifier indices: the input pipeline maps them through a Vocabulary.
OBJECT_XMIN = "image/object/bbox/xmin"
OBJECT_XMAX = "image/object/bbox/xmax"
OBJECT_YMIN = "image/object/bbox/ymin"
OBJECT_YMAX = "image/object/bbox/ymax"
OBJECT_CLASS = "image/object/class/label"
OBJECT_AREA = "image/object/area"
OBJECT_IS_CROWD = "image/object/is_crowd"
OBJECT_MASK = "image/object/mask"  # one PNG per object, image-sized, values 0/1.

# LVIS federated annotation: categories verified absent, and present but not fully annotated.
NOT_EXHAUSTIVE_CATEGORY_IDS = "image/not_exhaustive_category_ids"
NEG_CATEGORY_IDS = "image/neg_category_ids"
# The official LVIS converter wrote negatives under this name; readers accept it too.
NEG_CATEGORY_IDS_OFFICIAL = "image/image_neg_category_ids"

# Distillation (ViLD-image): M proposals and their teacher embeddings, flat M x D floats.
ROI_XMIN = "image/roi/bbox/xmin"
ROI_XMAX = "image/roi/bbox/xmax"
ROI_YMIN = "image/roi/bbox/ymin"
ROI_YMAX = "image/roi/bbox/ymax"
ROI_SCORE = "image/roi/bbox/score"
ROI_FEATURE = "image/roi/feature"

OBJECT_BOX_KEYS = (OBJECT_YMIN, OBJECT_XMIN, OBJECT_YMAX, OBJECT_XMAX)
ROI_BOX_KEYS = (ROI_YMIN, ROI_XMIN, ROI_YMAX, ROI_XMAX)
DISTILLATION_KEYS = ROI_BOX_KEYS + (ROI_SCORE, ROI_FEATURE)
