"""The teacher: a vision-language dual encoder that ViLD distils from, and its offline data.

  vild.teacher.interface        the `Teacher` interface (encode_text, encode_images)
  vild.teacher.clip_config      CLIP sizes: presets vit_b32, vit_b16, vit_l14, tiny; HF config
  vild.teacher.clip_model       CLIP towers in tf_keras
  vild.teacher.tokenizer        CLIP's byte-level BPE tokenizer (pure Python)
  vild.teacher.checkpoint       Hugging Face checkpoint directories <-> the tf_keras CLIP
  vild.teacher.preprocessing    CLIP image preprocessing in TensorFlow
  vild.teacher.clip_teacher     CLIP behind the Teacher interface; `load_clip_teacher`
  vild.teacher.prompts          ViLD's prompt templates and category-name clean-up
  vild.teacher.vocabulary_embeddings  a vocabulary -> its [C, D] text-embedding matrix
  vild.teacher.crops            1x / 1.5x proposal crops -> distillation region embeddings

Only the interface is imported here, so `import vild.teacher` stays light.
"""
from vild.teacher.interface import Teacher, TeacherError, checked_embeddings  # noqa: F401
