"""Every recipe key is honoured, refused or noted: none is accepted and then silently dropped.

The one accessor: code reads a recipe value as ``cfg.<key>`` (a ``Config`` is always named
``cfg``). This test parses every module under ``src/res2net`` and collects those reads; a key
must be read somewhere, or carry the note that is printed when it is set (``KeySpec.ignored``).
A key added to the schema without either fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from res2net.config import DATASETS, Config, key_specs, load_config
from res2net.config.mindspore_keys import ignored_key_notes
from res2net.config.schema import LEGACY_KEYS
from res2net.errors import ConfigError
from res2net.train.data_setup import DATA_SOURCES

SRC = Path(__file__).resolve().parents[1] / "src" / "res2net"


def keys_read_in_src() -> set[str]:
    read: set[str] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id == "cfg") or (
                isinstance(owner, ast.Attribute) and owner.attr == "cfg"
            ):
                read.add(node.attr)
    return read


READ = keys_read_in_src()
NOTED = {name for name, (spec, _) in key_specs().items() if spec.ignored}
REFUSED = {name for name, (spec, _) in key_specs().items() if spec.refused}
# Keys the parser consumes before a Config exists: the recipe file itself, and MindCV < 0.3
# spellings that it translates into their replacement key (tested in test_config.py).
CONSUMED_BY_PARSER = {"config"} | set(LEGACY_KEYS)


def test_the_scan_sees_reads() -> None:
    """The scan itself works: keys every run uses are found (a broken scan would find nothing)."""
    assert {"lr", "batch_size", "model", "re_max_attempts", "layer_decay", "reduction", "dataset"} <= READ


@pytest.mark.parametrize("name", sorted(key_specs()))
def test_every_key_is_read_refused_or_noted(name: str) -> None:
    assert name in READ | NOTED | REFUSED | CONSUMED_BY_PARSER, (
        f"recipe key '{name}' is accepted by the schema but nothing in src/ reads cfg.{name}, and it is "
        "neither refused nor noted: honour it, refuse it, or note it"
    )


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_keys_fail_with_their_reason(name: str) -> None:
    spec, _ = key_specs()[name]
    default = Config.__dataclass_fields__[name].default
    with pytest.raises(ConfigError, match="not supported") as info:
        load_config([f"--{name}", str(default + 1)], purpose="train")
    assert spec.refused in str(info.value) and info.value.exit_code == 2
    assert getattr(load_config([f"--{name}", str(default)], purpose="train"), name) == default


def test_every_dataset_value_has_a_reader() -> None:
    assert set(DATASETS) == set(DATA_SOURCES)


@pytest.mark.parametrize("name", sorted(NOTED))
def test_noted_keys_print_their_note_when_set(name: str) -> None:
    spec, tp = key_specs()[name]
    value = {bool: "True", int: "1", float: "0.5"}.get(tp, "x")
    cfg = load_config([f"--{name}", value], purpose="train")
    notes = ignored_key_notes(cfg)
    assert len(notes) == 1 and f"'{name}:" in notes[0] and spec.ignored in notes[0]
