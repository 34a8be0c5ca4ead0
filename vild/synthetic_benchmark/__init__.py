"""The synthetic benchmark: the whole ViLD pipeline on the synthetic open-vocabulary world.

  stages            cached stages (config-hash keys, done markers, --force) and worker jobs
  synthetic         the stage functions, `Pipeline` and `run_benchmark` (`make demo`)
  methods           the compared methods and the variants the ablations change
  clip_on_crops     CLIP on cropped regions, evaluated like every detector
  word_vectors      GloVe vectors of the captions: text embeddings without vision
  spread            seeds and spreads, and the rule that judges a claim
  report            RESULTS.md, the paper's table beside ours, and the figures
  ablations         the paper's other findings over seeds (`make ablations`)
  diagnostics       what the CLIP-on-crops investigation measures besides AP
  evaluation_noise  a bootstrap of AP_novel over the validation images
  ablation_report   ABLATIONS.md and its curves
"""
