"""The README's "Adding a task" example runs as written and yields model features."""
import pathlib
import re

import seqio

README = pathlib.Path(__file__).resolve().parents[2] / "xitt_tasks" / "README.md"


def _example_code() -> str:
    section = README.read_text(encoding="utf-8").split("## Adding a task", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_adding_a_task_the_usual_seqio_way(tmp_path, monkeypatch):
    (tmp_path / "mynli").mkdir()
    rows = ["a cat sleeps\ta cat sleeps\tentailment", "a dog runs\tno dog runs\tcontradiction"]
    for split in ("train", "dev"):
        (tmp_path / "mynli" / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.setenv("XITT_DATA_DIR", str(tmp_path))
    try:
        exec(compile(_example_code(), str(README), "exec"), {})
        ds = seqio.get_dataset("my.nli", {"inputs": 32, "targets": 8}, dataset_split="validation",
                               shuffle=False,
                               feature_converter=seqio.EncDecFeatureConverter(pack=False))
        examples = list(ds.as_numpy_iterator())
        assert len(examples) == 2 and all(ex["decoder_target_tokens"].any() for ex in examples)
        task = seqio.get_mixture_or_task("my.nli")
        first = next(iter(task.get_dataset({"inputs": 32, "targets": 8}, split="validation",
                                           shuffle=False).as_numpy_iterator()))
        assert first["targets_pretokenized"] == b"entailment"
        assert {t.name for t in seqio.get_mixture_or_task("my.mix").tasks} == {
            "my.nli", "xitt.inter.mnli"}
    finally:
        seqio.MixtureRegistry.remove("my.mix")
        seqio.TaskRegistry.remove("my.nli")
