"""ViLD's prompt engineering: category names -> the sentences the text encoder embeds.

A category is embedded as the mean of its prompts' unit embeddings (re-normalised), where the
prompts are every template filled with every (cleaned) synonym:

  * the 63 templates of the ViLD release (a subset of CLIP's ImageNet templates plus scene
    templates), or the single "a photo of {article} {}.";
  * names cleaned as ViLD does: '_' -> ' ', '/' -> ' or ', lower case, no trailing '.';
  * "a"/"an" chosen from the cleaned name's first letter (the release looked at the raw
    name, so "Apple" got "a");
  * optionally "This is " before every prompt that starts with "a" or "the" (ViLD's default).
"""
from typing import List, Sequence, Tuple

VILD_TEMPLATES: Tuple[str, ...] = (
    "There is {article} {} in the scene.",
    "There is the {} in the scene.",
    "a photo of {article} {} in the scene.",
    "a photo of the {} in the scene.",
    "a photo of one {} in the scene.",
    "itap of {article} {}.",
    "itap of my {}.",  # itap: "I took a picture"
    "itap of the {}.",
    "a photo of {article} {}.",
    "a photo of my {}.",
    "a photo of the {}.",
    "a photo of one {}.",
    "a photo of many {}.",
    "a good photo of {article} {}.",
    "a good photo of the {}.",
    "a bad photo of {article} {}.",
    "a bad photo of the {}.",
    "a photo of a nice {}.",
    "a photo of the nice {}.",
    "a photo of a cool {}.",
    "a photo of the cool {}.",
    "a photo of a weird {}.",
    "a photo of the weird {}.",
    "a photo of a small {}.",
    "a photo of the small {}.",
    "a photo of a large {}.",
    "a photo of the large {}.",
    "a photo of a clean {}.",
    "a photo of the clean {}.",
    "a photo of a dirty {}.",
    "a photo of the dirty {}.",
    "a bright photo of {article} {}.",
    "a bright photo of the {}.",
    "a dark photo of {article} {}.",
    "a dark photo of the {}.",
    "a photo of a hard to see {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of {article} {}.",
    "a low resolution photo of the {}.",
    "a cropped photo of {article} {}.",
    "a cropped photo of the {}.",
    "a close-up photo of {article} {}.",
    "a close-up photo of the {}.",
    "a jpeg corrupted photo of {article} {}.",
    "a jpeg corrupted photo of the {}.",
    "a blurry photo of {article} {}.",
    "a blurry photo of the {}.",
    "a pixelated photo of {article} {}.",
    "a pixelated photo of the {}.",
    "a black and white photo of the {}.",
    "a black and white photo of {article} {}.",
    "a plastic {}.",
    "the plastic {}.",
    "a toy {}.",
    "the toy {}.",
    "a plushie {}.",
    "the plushie {}.",
    "a cartoon {}.",
    "the cartoon {}.",
    "an embroidered {}.",
    "the embroidered {}.",
    "a painting of the {}.",
    "a painting of a {}.",
)
SINGLE_TEMPLATE: Tuple[str, ...] = ("a photo of {article} {}.",)
TEMPLATE_SETS = {"vild": VILD_TEMPLATES, "single": SINGLE_TEMPLATE}


def templates_named(name: str) -> Tuple[str, ...]:
  if name not in TEMPLATE_SETS:
    raise ValueError(f"unknown template set {name!r}; choose one of {sorted(TEMPLATE_SETS)}.")
  return TEMPLATE_SETS[name]


def clean_name(name: str) -> str:
  """'traffic_light' -> 'traffic light', 'cow/ox' -> 'cow or ox', lower case, no final '.'."""
  name = name.replace("_", " ").replace("/", " or ").lower()
  return " ".join(name.split()).rstrip(".")


def article(clean: str) -> str:
  return "an" if clean and clean[0] in "aeiou" else "a"


def prompts_for_name(name: str, templates: Sequence[str] = VILD_TEMPLATES,
                     this_is: bool = True) -> List[str]:
  """Every template filled with the cleaned `name`."""
  clean = clean_name(name)
  texts = [t.format(clean, article=article(clean)) for t in templates]
  if this_is:
    texts = ["This is " + t if t.startswith(("a", "the")) else t for t in texts]
  return texts


def prompts_for_category(synonyms: Sequence[str], templates: Sequence[str] = VILD_TEMPLATES,
                         this_is: bool = True) -> List[str]:
  """All prompts of all synonyms whose cleaned forms differ (the first is the name)."""
  seen, texts = set(), []
  for synonym in synonyms:
    clean = clean_name(synonym)
    if clean and clean not in seen:
      seen.add(clean)
      texts.extend(prompts_for_name(synonym, templates, this_is))
  return texts
