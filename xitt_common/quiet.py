"""Quiet entry points: a person sees the program's output, not the libraries' start-up lines.

Every `python -m ...` entry point calls `entry_point()` first (before it imports TensorFlow,
JAX or seqio: TF reads `TF_CPP_MIN_LOG_LEVEL` at import). Without `--verbose` among the
arguments:
- TF's C++ start-up lines (CUDA stub, CPU features, absl's "before InitializeLog" warning) are
  printed at its import, before any log level applies, so TF is imported with fd 2 pointed at
  /dev/null (`silenced_fd2`; Python errors raised inside still reach the terminal);
- `precompiled_charsmap is empty` comes from the sentencepiece that tensorflow_text links in
  (`normalizer.cc`, LOG(INFO) to std::cerr) each time a tokenizer op is built for a vocabulary
  with identity normalisation; its level is a file-static int, not exported, so it is raised
  to ERROR at its symbol-table address in the loaded library (`_quiet_tf_text_sentencepiece`);
- the Python loggers of the libraries go to ERROR and library warnings are ignored.
With `--verbose` nothing is changed.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import struct
import sys
import warnings
from collections.abc import Iterator, Sequence

VERBOSE_FLAG = "--verbose"
_LIBRARY_LOGGERS = ("absl", "tensorflow", "jax", "jax._src", "orbax", "seqio", "etils", "flax",
                    "tensorstore", "tensorflow_datasets", "google", "urllib3")
_LIBRARY_MODULES = (r"(absl|tensorflow|tensorflow_text|tensorflow_datasets|jax|jaxlib|flax|orbax|"
                    r"seqio|etils|optax|chex|google|gin|sentencepiece|tensorstore)(\.|$)")
_SP_LIBRARY = ("tensorflow_text", "python", "ops", "_sentencepiece_tokenizer.so")
_SP_LEVEL_SYMBOL = b"_ZN13sentencepiece12_GLOBAL__N_113g_minloglevelE"
_SP_ERROR = 2  # sentencepiece's LOG_ERROR: INFO and WARNING lines are dropped

_verbose = False
_entered = False


def entry_point(argv: Sequence[str] | None = None, *, libraries: bool = True,
                own_flag: bool = False) -> bool:
    """Quiet the libraries unless `--verbose` is in `argv` (default `sys.argv[1:]`); returns
    whether it is. `libraries`: import TF and seqio quietly now (an entry point that imports
    them at its top). `own_flag`: the entry point's parser takes `--verbose` itself; else it is
    removed from `sys.argv` here. A second call (a package's, then its module's) only does
    that removal."""
    global _verbose, _entered
    args = sys.argv[1:] if argv is None else list(argv)
    if not own_flag and argv is None:
        sys.argv[1:] = [a for a in args if a != VERBOSE_FLAG]
    if _entered:
        return _verbose
    _entered, _verbose = True, VERBOSE_FLAG in args
    if _verbose:
        return True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    warnings.filterwarnings("ignore", module=_LIBRARY_MODULES)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    _quiet_loggers()
    if libraries:
        quiet_imports()
    return False


def module_run_as_main() -> str | None:
    """MODULE of `python -m MODULE` while its packages are being imported (runpy sets argv[0]
    to '-m' until it has found the module), else None: a package whose import is heavy quiets
    its own `python -m` runs with it."""
    if sys.argv[:1] != ["-m"]:
        return None
    args = list(getattr(sys, "orig_argv", ()))[1:]
    for i, arg in enumerate(args):
        if arg == "-m":
            return args[i + 1] if i + 1 < len(args) else None
        if arg.startswith("-m"):
            return arg[2:]
    return None


def verbose() -> bool:
    """Whether the entry point was given `--verbose`."""
    return _verbose


@contextlib.contextmanager
def silenced_fd2() -> Iterator[None]:
    """fd 2 to /dev/null inside the block (C++ start-up lines no log level reaches); restored
    before an exception leaves it, so Python errors still reach the terminal."""
    err = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(err, 2)
        os.close(devnull)
        os.close(err)


def quiet_imports(seqio: bool = True) -> None:
    """Import TF (and with `seqio`, seqio and tensorflow_text) with their start-up lines
    discarded, TF kept off the GPUs (tf.data only), library loggers to ERROR. Nothing under
    `--verbose`."""
    if _verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with silenced_fd2():
        import absl.logging
        import tensorflow as tf

        if seqio:
            import seqio as _  # noqa: F401  (loads tensorflow_text's sentencepiece)

        tf.config.set_visible_devices([], "GPU")  # its failed cuInit is one more E line
        tf.get_logger().setLevel("ERROR")
        absl.logging.set_verbosity(absl.logging.ERROR)
    _quiet_loggers()
    _quiet_tf_text_sentencepiece()


def _quiet_loggers() -> None:
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def _quiet_tf_text_sentencepiece() -> bool:
    """Set tensorflow_text's sentencepiece log level to ERROR in this process; False when its
    library is not loaded or not as expected (then nothing is written)."""
    path = _loaded_sp_library()
    if path is None:
        return False
    base = _load_base(path)
    offset = _elf_symbol_value(path, _SP_LEVEL_SYMBOL)
    if base is None or offset is None:
        return False
    level = ctypes.c_int.from_address(base + offset)
    if level.value not in range(0, 5):  # not a log level: the address is wrong, leave it
        return False
    level.value = max(level.value, _SP_ERROR)
    return True


def _loaded_sp_library() -> str | None:
    module = sys.modules.get("tensorflow_text")
    if module is None or not getattr(module, "__file__", None) or not sys.platform == "linux":
        return None
    root = os.path.dirname(os.path.dirname(module.__file__))
    path = os.path.realpath(os.path.join(root, *_SP_LIBRARY))
    return path if os.path.exists(path) else None


def _load_base(path: str) -> int | None:
    """Start of the library's first mapping (file offset 0) in this process."""
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].strip() == path and int(fields[2], 16) == 0:
                return int(fields[0].split("-")[0], 16)
    return None


def _elf_symbol_value(path: str, name: bytes) -> int | None:
    """st_value of `name` in a little-endian ELF64 file's .symtab (local symbols included,
    which dlsym cannot see); None when absent or when the first PT_LOAD is not at 0."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:6] != b"\x7fELF\x02\x01":
        return None
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 0x36)
    loads = [struct.unpack_from("<IIQQ", data, phoff + i * phentsize)
             for i in range(phnum)]
    if min((p[3] for p in loads if p[0] == 1), default=None) != 0:  # PT_LOAD vaddrs
        return None
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    for _, sh_type, _, _, offset, size, link, _, _, entsize in sections:
        if sh_type != 2 or entsize != 24:  # SHT_SYMTAB
            continue
        strtab = sections[link]
        strings = data[strtab[4]:strtab[4] + strtab[5]]
        at = strings.find(b"\0" + name + b"\0")
        if at < 0:
            return None
        for st_name, _, _, _, value, _ in struct.iter_unpack("<IBBHQQ",
                                                               data[offset:offset + size]):
            if st_name == at + 1:
                return value
    return None
