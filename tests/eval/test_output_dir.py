"""Per-checkpoint evaluation output, written completely or not at all."""
import pytest

from eval import output_dir


def test_success_renames_into_place(tmp_path):
    final = output_dir.checkpoint_output_dir(tmp_path / "out", 1200)
    assert final.name == "checkpoint_1200"
    with output_dir.atomic_output_dir(final) as tmp:
        assert tmp != final and tmp.parent == final.parent
        (tmp / "de").mkdir()
        (tmp / "de" / "metrics.json").write_text("{}")
        assert not final.exists()  # nothing visible until the body finishes
    assert (final / "de" / "metrics.json").read_text() == "{}"
    assert sorted(p.name for p in final.parent.iterdir()) == ["checkpoint_1200"]


def test_failure_partway_keeps_the_old_output_whole(tmp_path):
    final = tmp_path / "checkpoint_5"
    with output_dir.atomic_output_dir(final) as tmp:
        for lang in ("de", "fr"):
            (tmp / f"{lang}.json").write_text("old")
    with pytest.raises(RuntimeError, match="decode failed"):
        with output_dir.atomic_output_dir(final) as tmp:
            (tmp / "de.json").write_text("new")
            raise RuntimeError("decode failed on fr")
    # The old run's languages only: no new 'de' beside a stale 'fr', no temporary left.
    assert {p.name: p.read_text() for p in final.iterdir()} == {"de.json": "old",
                                                                "fr.json": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_5"]


def test_success_replaces_the_old_output(tmp_path):
    final = tmp_path / "checkpoint_5"
    with output_dir.atomic_output_dir(final) as tmp:
        (tmp / "stale.json").write_text("old")
    with output_dir.atomic_output_dir(final) as tmp:
        (tmp / "fresh.json").write_text("new")
    assert [p.name for p in final.iterdir()] == ["fresh.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_5"]


def test_leftovers_of_a_killed_run_are_removed(tmp_path):
    (tmp_path / "checkpoint_5.tmp-123-abcd").mkdir()
    (tmp_path / "checkpoint_5.old-123-abcd").mkdir()
    (tmp_path / "checkpoint_50").mkdir()  # another checkpoint's output is not a leftover
    with output_dir.atomic_output_dir(tmp_path / "checkpoint_5") as tmp:
        (tmp / "x").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_5", "checkpoint_50"]


def test_checkpoint_step_parses_or_names_the_path():
    assert output_dir.checkpoint_step("/runs/a/checkpoint_1008000") == 1008000
    with pytest.raises(ValueError, match="'/runs/a': expected a directory named checkpoint_"):
        output_dir.checkpoint_step("/runs/a")
    with pytest.raises(ValueError, match="step=-1"):
        output_dir.checkpoint_output_dir("/x", -1)
