"""Gin at the entry point only (t5x style): parse files and `--gin.NAME=VALUE` bindings, import
the module that registers the seqio tasks, and write the operative config next to the run.

The library never imports gin; `.gin` files bind `trainer.train` and the constructors handed
to it through `from __gin__ import dynamic_registration`.
"""
from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gin
from etils import epath

TASK_MODULE_MACRO = "MIXTURE_OR_TASK_MODULE"
CONFIG_FILE = "config.gin"
REPO_ROOT = Path(__file__).resolve().parent.parent


def split_gin_flags(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """t5x's `--gin.NAME=VALUE` flags -> gin binding strings `NAME = VALUE`; other args kept."""
    bindings, rest = [], []
    for arg in argv:
        if arg.startswith("--gin."):
            name, sep, value = arg[len("--gin."):].partition("=")
            if not sep or not name:
                raise ValueError(f"{arg!r}: expected --gin.NAME=VALUE")
            bindings.append(f"{name} = {value}")
        else:
            rest.append(arg)
    return bindings, rest


def parse(gin_files: Sequence[str], bindings: Sequence[str],
          search_paths: Sequence[str] = (".", str(REPO_ROOT))) -> None:
    """Parse files, then bindings, without finalizing (task modules are imported first).

    A binding to a macro that no file defines is an error: gin would silently create it, so a
    typo such as EMBED_DIMS=256 would change nothing.
    """
    gin.clear_config()
    for path in search_paths:
        gin.add_config_file_search_path(path)
    for f in gin_files:
        if not any(epath.Path(p, f).exists() for p in search_paths) and \
                not epath.Path(f).exists():
            raise FileNotFoundError(f"--gin_file={f}: no such file (searched {list(search_paths)})")
    refuse_old_trainer_bindings(gin_files, bindings, search_paths)
    try:
        gin.parse_config_files_and_bindings(list(gin_files), None, finalize_config=False)
    except ValueError as e:
        raise ValueError(_with_hint(str(e))) from None
    for binding in bindings:
        name = binding.partition("=")[0].strip()
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            try:
                gin.query_parameter(f"%{name}")
            except ValueError:
                raise ValueError(f"gin binding {binding!r}: no macro {name} is defined in "
                                 f"{', '.join(gin_files)}") from None
        try:
            gin.parse_config(binding)
        except ValueError as e:
            raise ValueError(_with_hint(f"gin binding {binding!r}: {e}")) from None
        except SyntaxError as e:
            raise ValueError(_syntax_hint(binding, e)) from None


def refuse_old_trainer_bindings(gin_files: Sequence[str], bindings: Sequence[str],
                                search_paths: Sequence[str] = (".",)) -> None:
    """A file or binding written for the trainer's keyword list before its settings were
    grouped (an old model directory's config.gin): one line saying how to migrate it."""
    from train import gin_migrate

    for f in gin_files:
        path = next((epath.Path(p, f) for p in search_paths if epath.Path(p, f).exists()),
                    epath.Path(f))
        text = path.read_text()
        found = gin_migrate.old_bindings(text) if "trainer.train" in text else []
        if found:
            line, name = found[0]
            raise ValueError(
                f"{path}:{line}: trainer.train.{name} is bound as before the trainer's settings "
                f"were grouped (now {gin_migrate.new_name(name)}); rewrite the file with "
                f"`python -m train.gin_migrate {path}`")
    for binding in bindings:
        found = gin_migrate.old_bindings(binding) if "trainer.train" in binding else []
        if found:
            name = found[0][1]
            raise ValueError(f"gin binding {binding!r}: trainer.train.{name} is now "
                             f"{gin_migrate.new_name(name)}; bind that instead")


def _syntax_hint(binding: str, error: SyntaxError) -> str:
    """A bare gin SyntaxError, with the quoting an unquoted string needs."""
    name, _, value = (part.strip() for part in binding.partition("="))
    detail = (str(error.msg or error).strip().splitlines() or ["not a gin value"])[-1].strip()
    message = f"gin binding {binding!r}: {detail} (gin values are Python literals)"
    if value and value[0] not in "'\"@%[({" and not re.fullmatch(r"[-+0-9.eE]+", value):
        message += f"; a string needs quotes: did you mean --gin.{name}=\"'{value}'\"?"
    return message


def _with_hint(message: str) -> str:
    if "No configurable matching" in message or "has no parameter" in message \
            or "doesn't have a parameter" in message:
        message += ("\n(Unknown gin binding. Check the spelling, and that the .gin file "
                    "imports its module with `from __gin__ import dynamic_registration` "
                    "and `from train import ...`.)")
    return message


def model_config_from_gin(macro: str = "MODEL_CONFIG") -> Any:
    """Evaluate `MODEL_CONFIG = @config.MT5Config()` of the parsed gin files."""
    try:
        reference = gin.query_parameter(f"%{macro}")
    except ValueError:
        raise ValueError(f"the gin files define no {macro} (a gin/models/*.gin file sets "
                         f"{macro} = @config.MT5Config())") from None
    return reference.scoped_configurable_fn()


def model_from_gin(macro: str = "MODEL", config_macro: str = "MODEL_CONFIG") -> Any:
    """The run's `train.models` model: the `MODEL` macro when the gin files define one (e.g.
    `MODEL = @dual_encoder.DualEncoderModel()`), else the encoder-decoder of `MODEL_CONFIG`."""
    from train import models

    try:
        reference = gin.query_parameter(f"%{macro}")
    except ValueError:
        return models.EncoderDecoderModel(model_config_from_gin(config_macro))
    return models.as_model(reference.scoped_configurable_fn()
                           if hasattr(reference, "scoped_configurable_fn") else reference)


def task_modules(extra: Sequence[str] = ()) -> list[str]:
    """Modules to import: `--mixture_or_task_module` flags plus the MIXTURE_OR_TASK_MODULE
    macro (a module name, a list of them, or None)."""
    modules = list(extra)
    try:
        value = gin.query_parameter(f"%{TASK_MODULE_MACRO}")
    except ValueError:
        value = None
    if isinstance(value, str):
        modules.append(value)
    elif value is not None:
        modules.extend(value)
    return modules


def import_modules(modules: Sequence[str]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ImportError(f"{TASK_MODULE_MACRO}={name!r}: cannot import it ({e})") from e


CACHE_DIRS_FLAG = "--seqio_additional_cache_dirs"


def add_seqio_cache_dirs(flags: Sequence[str]) -> list[str]:
    """t5x's `--seqio_additional_cache_dirs`: each directory (flags repeated or
    comma-separated) is checked and appended to seqio's global cache directories, where
    `use_cached` looks for the tasks' caches (`seqio.scripts.cache_tasks_main`'s output).
    A directory that does not exist is an error naming it. Returns the directories added."""
    dirs = [d.strip() for flag in flags for d in flag.split(",") if d.strip()]
    for d in dirs:
        if not epath.Path(d).is_dir():
            raise FileNotFoundError(2, f"{CACHE_DIRS_FLAG}: no such directory: {d}", d)
    if dirs:
        import seqio  # not at import time: the entry points import gin_utils early

        seqio.add_global_cache_dirs(dirs)
    return dirs


def finalize() -> None:
    try:
        gin.finalize()
    except ValueError as e:
        message = str(e)
        if "gin.REQUIRED" in message:
            message += ("\n(A required value is unset: pass it as --gin.NAME=VALUE, strings "
                        "quoted, e.g. --gin.MODEL_DIR=\"'/tmp/run'\".)")
        raise ValueError(message) from None


def write_config(model_dir: str, modules: Sequence[str] = ()) -> str | None:
    """The operative config (what the run actually used), atomically, on process 0.

    An existing `config.gin` is never overwritten: it records how the run started. A restart
    whose operative config differs writes it beside, as `config.<n>.gin` (n = 1, 2, ...), and a
    restart with the same config writes nothing. Returns the file written (None if none).
    """
    import jax  # not at import time: train.inspect sets XLA_FLAGS before JAX starts

    if jax.process_index() != 0:
        return None
    directory = epath.Path(model_dir)
    directory.mkdir(parents=True, exist_ok=True)
    text = gin.operative_config_str()
    if modules:
        text += (f"\n# Imported to register the seqio tasks:\n"
                 f"{TASK_MODULE_MACRO} = {list(modules)!r}\n")
    target = directory / CONFIG_FILE
    if target.exists():
        if target.read_text() == text:
            return None
        stem = CONFIG_FILE.removesuffix(".gin")
        n = 1
        while (directory / f"{stem}.{n}.gin").exists():
            n += 1
        target = directory / f"{stem}.{n}.gin"
    tmp = directory / (target.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(target)
    return str(target)
