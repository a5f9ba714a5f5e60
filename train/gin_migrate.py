"""Rewrite a gin file written for the trainer's old keyword list to bind its settings objects.

  python -m train.gin_migrate MODEL_DIR/config.gin [OTHER.gin ...]

Before the settings were grouped (train/settings.py), gin files and the operative config.gin
of every model directory bound `trainer.train.batch_size = 128` and forty more such names;
now `trainer.train` takes `data = @settings.DataSettings()`, ... and the field moves to
`settings.DataSettings.batch_size`. `gin_utils.parse` refuses an old file with one line naming
this command. Each file is rewritten atomically, the original kept beside it as `<file>.orig`;
resuming a model directory does not need this (its checkpoints, run_identity.json and
train_origin.json are unchanged), re-parsing its old config.gin does.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

FLAT = re.compile(r"^trainer\.train\.(\w+)(\s*=.*)$")
BLOCK = re.compile(r"^trainer\.train\s*:\s*(#.*)?$")
ENTRY = re.compile(r"^(\s+)(\w+)(\s*=.*)$")
_NONE = re.compile(r"^\s*=\s*None\s*(#.*)?$")
IMPORT = "from train import settings"
NEW_VALUE = re.compile(r"^\s*=\s*@settings\.")  # `trainer.train.mesh = @settings.MeshSettings()`


def _groups() -> dict[str, str]:
    """Old keyword -> settings class name (imported late: gin_utils loads before JAX)."""
    from train import settings

    return {f: cls.__name__ for cls in settings.GROUPS.values()
            for f in cls.__dataclass_fields__}


def _is_old(name: str, rest: str, groups: dict[str, str]) -> bool:
    # `mesh` is both an old keyword (a Mesh) and the new argument (the MeshSettings).
    return (name in groups and not NEW_VALUE.match(rest)) or name == "model_config"


def old_bindings(text: str) -> list[tuple[int, str]]:
    """(line number, name) of every old-style `trainer.train` binding in a gin text."""
    groups = _groups()
    return [(n, m.group(1)) for n, line in _flatten(text.splitlines())
            if (m := FLAT.match(line)) and _is_old(m.group(1), m.group(2), groups)]


def new_name(name: str) -> str:
    """Where an old `trainer.train` keyword is bound now."""
    if name == "model_config":
        return "trainer.train.model"
    return f"settings.{_groups()[name]}.{name}"


def _flatten(lines: list[str]) -> list[tuple[int, str]]:
    """(line number, line), `trainer.train:` blocks turned into one `trainer.train.name =
    value` line per entry (deeper indented continuation lines follow their entry unchanged)."""
    out, indent = [], None
    for n, line in enumerate(lines, 1):
        if BLOCK.match(line):
            indent = ""
            continue
        entry = ENTRY.match(line) if indent is not None else None
        if entry and indent in ("", entry.group(1)):
            indent = entry.group(1)
            out.append((n, f"trainer.train.{entry.group(2)}{entry.group(3)}"))
            continue
        if indent is not None and line.strip() and not line[:1].isspace():
            indent = None
        out.append((n, line))
    return out


def migrate(text: str) -> str:
    """The gin text with the old keywords bound on their settings objects."""
    groups, lines = _groups(), [line for _, line in _flatten(text.splitlines())]
    bound = {m.group(1): m.group(2) for m in map(FLAT.match, lines) if m}
    new_style = {name for name, rest in bound.items() if NEW_VALUE.match(rest)}
    model_is_none = _NONE.match(bound.get("model", "= None")) is not None
    out, used, first = [], [], None
    for line in lines:
        m = FLAT.match(line)
        name, rest = (m.group(1), m.group(2)) if m else (None, None)
        if name is not None and name != "model_config" and _is_old(name, rest, groups):
            first = len(out) if first is None else first
            used.append(groups[name])
            out.append(f"settings.{groups[name]}.{name}{rest}")
        elif name == "model_config":  # the encoder-decoder of a config: now `model`
            if model_is_none and not _NONE.match(rest):
                out.append(f"trainer.train.model{rest}")
        elif name == "model" and _NONE.match(rest):
            continue
        else:
            out.append(line)
    from train import settings

    argument = {cls.__name__: arg for arg, cls in settings.GROUPS.items()}
    refs = [f"trainer.train.{argument[cls]} = @settings.{cls}()"
            for cls in dict.fromkeys(used) if argument[cls] not in new_style]
    if first is not None:
        out[first:first] = refs
    if used and IMPORT not in out:
        at = next((i + 1 for i, line in enumerate(out) if line.startswith("from train import")),
                  0)
        out.insert(at, IMPORT)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def migrate_file(path: str | Path) -> bool:
    """Rewrite one file in place (original kept as `<file>.orig`); False if it was current."""
    path = Path(path)
    text = path.read_text()
    if not old_bindings(text):
        return False
    new = migrate(text)
    path.with_name(path.name + ".orig").write_text(text)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(new)
    tmp.replace(path)
    return True


def main(argv: Sequence[str]) -> None:
    if not argv:
        raise ValueError("usage: python -m train.gin_migrate FILE.gin [FILE.gin ...]")
    for f in argv:
        if not Path(f).is_file():
            raise FileNotFoundError(2, "no such gin file", f)
        print(f"{f}: {'rewritten (original in .orig)' if migrate_file(f) else 'already current'}")


if __name__ == "__main__":
    from train import cli

    cli.run(main, sys.argv[1:], prog="python -m train.gin_migrate")
