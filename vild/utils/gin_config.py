"""Parsing gin experiments from any working directory, with every configurable registered,
and every script's gin flags.

Config files given on the command line resolve against the current directory, then the
repository; `include 'configs/...'` lines inside them resolve against the repository. (gin
would otherwise try `configs.lvis` as a Python package and crash when the repository is on
sys.path.) A file or binding gin cannot parse (a typo in a name, a syntax error) raises
`GinConfigError` with gin's message, which names the file and line. Every module declaring a
configurable is imported first (vild.configurables), so a binding never names an unknown
configurable and no later import meets a locked config.
"""
import contextlib
import os
from typing import Sequence

from absl import flags
import gin

from vild import configurables

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class GinConfigError(ValueError):
  """A gin file or binding that does not parse, or names no configurable or parameter."""


def resolve(path: str) -> str:
  """An existing gin file's absolute path: as given, else under the repository (a URL such as
  gs://bucket/run/config.gin as given)."""
  if "://" in path:
    # Imported here: scripts quiet TensorFlow's logs (vild.utils.cli) before it loads.
    from vild.utils import io  # pylint: disable=g-import-not-at-top
    if io.exists(path):
      return path
    raise ValueError(f"gin file {path!r} not found.")
  for candidate in (path, os.path.join(REPO, path)):
    if os.path.isfile(candidate):
      return os.path.abspath(candidate)
  raise GinConfigError(f"gin file {path!r} not found (looked in {os.getcwd()} and {REPO}); give "
                   "a path such as configs/lvis/vild_r50.gin.")


@contextlib.contextmanager
def _working_directory(path: str):
  previous = os.getcwd()
  os.chdir(path)
  try:
    yield
  finally:
    os.chdir(previous)


def define_flags() -> None:
  """A script's --gin_file and --gin_param flags (--gin_bindings: the old name of --gin_param).

  vild.utils.cli.run defines them for every script that has not.
  """
  flags.DEFINE_multi_string("gin_file", [], "Gin config file (repeatable), e.g. "
                            "configs/lvis/vild_r50.gin; relative paths resolve against the "
                            "current directory, then the repository.")
  flags.DEFINE_multi_string("gin_param", [], "Gin binding (repeatable), applied after the "
                            "files, e.g. 'ViLDTrainer.train_steps = 100'. --gin_bindings is a "
                            "deprecated alias.")
  flags.DEFINE_alias("gin_bindings", "gin_param")


def parse_flags() -> None:
  """Parses the files and bindings given by the flags of `define_flags`."""
  parse(flags.FLAGS.gin_file, flags.FLAGS.gin_param)


def parse(files: Sequence[str], bindings: Sequence[str] = (), finalize: bool = True) -> None:
  """Parses gin files (then bindings) with includes resolved against the repository."""
  configurables.register_all()
  files = [resolve(f) for f in files]
  with _working_directory(REPO):
    try:
      gin.parse_config_files_and_bindings(files, list(bindings), finalize_config=finalize)
    except (ValueError, SyntaxError, ImportError) as e:  # gin's parse and lookup errors
      raise GinConfigError(f"gin config: {e}") from e
