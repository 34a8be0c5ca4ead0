"""The command line every script in scripts/ shares: gin flags, quiet logs, user errors.

A script reads:

    from vild.utils import cli
    cli.quiet_native_logs()  # before TensorFlow loads: it reads its C++ log level once

    from absl import flags  # noqa: E402
    ...
    def main(argv):
      gin_config.parse_flags()  # or hand FLAGS.gin_file / FLAGS.gin_param to the model loader
      ...

    if __name__ == "__main__":
      cli.run(main)

`run` gives every script --gin_file, --gin_param (old name --gin_bindings) and --verbose, listed
by --help, and runs `main` with absl's `app.run`. Without --verbose:
  - TensorFlow's C++ log (CUDA probing, CPU-feature notes, grappler's cost-model warnings
    through Abseil) is off, its Python log shows errors only, and INFO lines come from vild's own code only (progress, what was written);
  - an error vild reports on purpose (`is_user_error`) prints "error: <message>" and exits
    with status 1; anything else is a bug and keeps its full traceback.
--verbose (or the environment variable VILD_VERBOSE=1) shows every log line and the traceback
of every error. A TF_CPP_MIN_LOG_LEVEL set by the user is left alone.
"""
import ctypes
import functools
import logging
import os
import re
import sys
import traceback
from typing import Any, Callable, List, Optional

from absl import app
from absl import flags
from absl import logging as absl_logging

from vild.utils import gin_config

VERBOSE_ENV = "VILD_VERBOSE"
_VILD_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_OWN_CODE = (_VILD_DIR + os.sep, os.path.join(gin_config.REPO, "scripts") + os.sep)
_FILE_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
                PermissionError)
USER_ERROR_STATUS = 1
INTERRUPTED_STATUS = 130  # 128 + SIGINT, as shells report it


def _verbose_env() -> bool:
  return os.environ.get(VERBOSE_ENV, "").lower() in ("1", "true", "yes")


def _verbose_in_argv(argv: List[str]) -> bool:
  """--verbose on the command line or VILD_VERBOSE=1, read before absl parses the flags."""
  verbose = _verbose_env()
  for arg in argv[1:]:
    if arg == "--":
      break
    if arg in ("--verbose", "--verbose=true", "--verbose=1"):
      verbose = True
    elif arg in ("--noverbose", "--verbose=false", "--verbose=0"):
      verbose = False
  return verbose


def quiet_native_logs(argv: Optional[List[str]] = None) -> None:
  """Turns TensorFlow's C++ log off unless --verbose (or VILD_VERBOSE=1) asks for it.

  TensorFlow reads TF_CPP_MIN_LOG_LEVEL once, when it loads, so this must run before anything
  imports TensorFlow; later it changes nothing. A level the user set is kept. Level 3 hides
  the CUDA-probe line that every CPU-only run prints at error level; real failures still
  reach the user as Python exceptions.
  """
  argv = sys.argv if argv is None else argv
  if _verbose_in_argv(argv):
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
  else:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class _OwnInfoOnly(logging.Filter):
  """Passes warnings and errors, and INFO lines logged by vild's own code."""

  def filter(self, record: logging.LogRecord) -> bool:
    return (record.levelno >= logging.WARNING or
            os.path.abspath(record.pathname).startswith(_OWN_CODE))


def quiet_python_logs() -> None:
  """TensorFlow's Python log at ERROR; other libraries' absl INFO lines (official.vision's
  layer specs, SavedModel input renames, ...) dropped."""
  logging.getLogger("tensorflow").setLevel(logging.ERROR)
  absl_logger = absl_logging.get_absl_logger()
  if not any(isinstance(f, _OwnInfoOnly) for f in absl_logger.filters):
    absl_logger.addFilter(_OwnInfoOnly())


# absl::SetMinLogLevel in the TensorFlow 2.20 framework library (Abseil LTS 2025-01-27). Some
# of TensorFlow's C++ (grappler's op-level cost estimator: ~1 KB per run about CropAndResize)
# logs through Abseil directly, which TF_CPP_MIN_LOG_LEVEL does not reach.
_ABSL_SET_MIN_LOG_LEVEL = "_ZN4absl12lts_2025012714SetMinLogLevelENS0_18LogSeverityAtLeastE"
_ABSL_ERROR = 2  # absl::LogSeverityAtLeast::kError


def quiet_abseil_logs() -> bool:
  """Abseil's C++ log at ERROR (TensorFlow must be loaded); False if this TensorFlow build
  does not export the setter (then its warnings still print: harmless)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  library = os.path.join(os.path.dirname(tf.__file__), "libtensorflow_framework.so.2")
  try:
    setter = getattr(ctypes.CDLL(library, mode=os.RTLD_NOLOAD), _ABSL_SET_MIN_LOG_LEVEL)
  except (OSError, AttributeError):
    return False
  setter.argtypes, setter.restype = [ctypes.c_int], None
  setter(_ABSL_ERROR)
  return True


def quiet_worker_logs() -> None:
  """In a worker process a script started (multiprocessing spawn passes it the script's
  argv): TensorFlow's C++ warnings as quiet as in the script, unless --verbose."""
  if not _verbose_in_argv(sys.argv):
    quiet_abseil_logs()


def _raised_by_vild(error: BaseException) -> bool:
  """True when a `raise` statement in vild's (or a script's) own code raised `error`.

  Such an error is a message written for the user. A ValueError that an operation inside vild
  raised (an unpacking mistake, numpy on a wrong shape) is a bug, and keeps its traceback.
  """
  frames = traceback.extract_tb(error.__traceback__)
  if not frames:
    return False
  last = frames[-1]
  return (os.path.abspath(last.filename).startswith(_OWN_CODE) and
          (last.line or "").lstrip().startswith("raise"))


def _raised_by_gin(error: BaseException) -> bool:
  """gin's own complaints at call time: an unknown configurable, a missing REQUIRED binding."""
  frames = traceback.extract_tb(error.__traceback__)
  if not frames or os.sep + "gin" + os.sep not in frames[-1].filename:
    return False
  return isinstance(error, ValueError) or str(error).startswith("Required bindings")


def is_user_error(error: BaseException) -> bool:
  """Whether `error` is a message for the user (printed alone) rather than a bug (traceback).

  User errors: the exception classes vild defines (they carry messages naming the file, field
  and fix), ValueErrors raised on purpose by vild's code, gin config errors (typos, missing
  bindings), a missing or unreadable file, absl's UsageError.
  """
  if isinstance(error, (app.UsageError,) + _FILE_ERRORS):
    return True
  if any(cls.__module__.startswith("vild.") for cls in type(error).__mro__):
    return True
  return (isinstance(error, ValueError) and _raised_by_vild(error)) or _raised_by_gin(error)


def user_message(error: BaseException) -> str:
  """The error's message without the "In call to configurable 'f' (<function f at 0x...>)"
  lines gin appends when the error passes through a configurable."""
  return re.sub(r"\n\s*In call to configurable '[^']*' \(<[^\n]*>\)", "", str(error))


def _define_flags() -> None:
  """--verbose and the gin flags, unless the script defined them; key flags of the script."""
  if "verbose" not in flags.FLAGS:
    flags.DEFINE_bool("verbose", _verbose_env(), "Show every log line (TensorFlow's C++ and "
                      "Python logs, other libraries' INFO) and the traceback of every error; "
                      f"also {VERBOSE_ENV}=1.")
  if "gin_param" not in flags.FLAGS:
    gin_config.define_flags()
  main_module = sys.argv[0]  # what absl's --help lists: the key flags of this module
  for name in ("gin_file", "gin_param", "gin_bindings", "verbose"):
    if name in flags.FLAGS:
      flags.FLAGS.register_key_flag_for_module(main_module, flags.FLAGS[name])


def _run_main(main: Callable[[List[str]], Any], argv: List[str]) -> Any:
  verbose = flags.FLAGS.verbose
  if not verbose:
    quiet_python_logs()
    quiet_abseil_logs()
  try:
    return main(argv)
  except KeyboardInterrupt:
    if verbose:
      raise
    print("\nInterrupted.", file=sys.stderr)
    sys.exit(INTERRUPTED_STATUS)
  except Exception as e:  # pylint: disable=broad-except
    if verbose or not is_user_error(e):
      raise
    sys.stdout.flush()
    print(f"error: {user_message(e)}", file=sys.stderr)
    sys.exit(USER_ERROR_STATUS)


def run(main: Callable[[List[str]], Any]) -> None:
  """`app.run(main)` with the shared flags, quiet logs and user errors (module docstring)."""
  _define_flags()
  app.run(functools.partial(_run_main, main))
