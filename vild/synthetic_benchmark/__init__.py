"""The synthetic benchmark: the whole ViLD pipeline on the synthetic open-vocabulary world.

  stages       cached stages (config-hash keys, done markers, --force)
  synthetic    the stage functions and `run_benchmark`, the pipeline of the paper's study
  methods      the compared methods (supervised, oracle, ViLD-text, ViLD-image, ViLD, ensemble)
  report       RESULTS.md, the paper's table beside ours, and the figures
"""
