"""The benchmark harness's arithmetic and report, on made-up timings (nothing is timed here):
ratios are of medians against the faster PyTorch setting, MFU uses train.flops and the
measured peak, decode speed-ups only count with identical tokens, compilations must not grow,
and the results block of BENCHMARKS.md is replaced without touching the prose around it."""
from __future__ import annotations

import pytest

from benchmarks import __main__ as cli
from benchmarks import report, shapes, suite, timing
from train import flops

SHAPE = shapes.train_shapes(quick=True)[1]


def _tokens() -> int:
    return SHAPE.batch_size * (SHAPE.input_length + SHAPE.target_length)


def test_repeat_times_each_call_after_warmup_and_checks_arguments():
    calls = []
    seconds = timing.repeat(lambda: calls.append(1), warmup=2, reps=3)
    assert len(calls) == 5 and len(seconds) == 3 and all(s >= 0 for s in seconds)
    with pytest.raises(ValueError, match="reps=0"):
        timing.repeat(lambda: None, 0, 0)
    assert timing.ratio([4.0, 100.0, 4.0], [1.0, 2.0, 0.5]) == 4.0


def test_peak_is_the_best_framework_per_dtype():
    results = {"jax:float32": {"flops": 8e9, "seconds": [0.1, 0.2, 0.1]},
               "torch:float32": {"flops": 8e9, "seconds": [0.05, 0.05, 0.9]},
               "jax:bfloat16": {"flops": 8e9, "seconds": [0.4]},
               "torch:bfloat16": {"flops": 8e9, "seconds": [0.02]}}
    rows, peaks = suite.peak_rows(results)
    assert peaks == {"float32": 8e9 / 0.05, "bfloat16": 8e9 / 0.02}
    assert len(rows) == 4 and all(r.section == "peak" for r in rows)


def test_train_ratio_uses_the_faster_pytorch_setting_and_exact_flops():
    ours = {"step_seconds": [1.0, 1.2, 1.0], "first_loss_per_token": 10.0}
    default = {"step_seconds": [3.0, 3.0, 3.0], "first_loss_per_token": 10.0}
    tuned = {"step_seconds": [2.5, 2.4, 2.6], "first_loss_per_token": 10.0}
    peak = 1e11
    rows = suite.train_rows(SHAPE, ours, default, tuned, peak, mfu_target=True)
    speed, _, mfu = rows
    assert speed.value == "2.50x" and speed.met is True
    assert f"ours {suite._fmt(_tokens() / 1.0)} tok/s" in speed.detail
    want = flops.train_step_flops(SHAPE.config, SHAPE.batch_size, SHAPE.input_length,
                                  SHAPE.target_length) / 1.0 / peak
    assert mfu.value == f"{want:.1%}" and mfu.met == (want >= suite.MFU_TARGET)
    slow = suite.train_rows(SHAPE, {**ours, "step_seconds": [2.0]}, default, tuned, None)
    assert len(slow) == 2 and slow[0].met is False  # 2.4 / 2.0 = 1.2x, and no peak: no MFU


def test_decode_counts_only_with_identical_tokens():
    ours = {"seconds": [1.0], "tokens": [[5, 1, 0], [7, 7, 1]]}
    same = suite.decode_rows(SHAPE, ours, {"seconds": [4.0], "tokens": ours["tokens"]}, 2, 3)[0]
    assert same.value == "4.00x" and same.met is True and "2/2" in same.detail
    other = suite.decode_rows(SHAPE, ours, {"seconds": [4.0], "tokens": [[5, 1, 0], [7, 8, 1]]},
                              2, 3)[0]
    assert other.met is False and "1/2" in other.detail


def test_decode_splits_the_encoder_from_the_token_loop():
    # ours 1.0 s of which 0.4 s encoder; theirs 4.0 s of which 1.0 s: 3 tokens after the
    # encoder take 200 vs 1000 ms each, 5x, while the whole call is 4x.
    ours = {"seconds": [1.0], "encoder_seconds": [0.4], "tokens": [[5, 1, 0]]}
    theirs = {"seconds": [4.0], "encoder_seconds": [1.0], "tokens": [[5, 1, 0]]}
    row = suite.decode_rows(SHAPE, ours, theirs, 1, 3)[0]
    assert row.value == "4.00x"
    assert "encoder alone 0.40 s vs 1.00 s (40% of our call)" in row.detail
    assert "after it 200 vs 1000 ms/token (5.00x)" in row.detail


def test_input_and_eval_rows():
    row = suite.input_rows(SHAPE, {"seconds": [0.1, 0.1], "examples_per_batch": 20.0}, 2.0)[0]
    assert row.value == "20.0x" and row.met is True  # 200 ex/s produced vs 10 ex/s consumed
    tasks = [{"task": "a", "compilations": 1}, {"task": "b", "compilations": 0}]
    ok = suite.eval_rows({"tasks": tasks, "seconds": 3.0, "examples": 9,
                          "compilations_total": 1})[0]
    assert ok.met is True
    grew = suite.eval_rows({"tasks": tasks + [{"task": "c", "compilations": 1}], "seconds": 3.0,
                            "examples": 9, "compilations_total": 2})[0]
    assert grew.met is False


def test_report_replaces_only_the_results_block(tmp_path):
    path = str(tmp_path / "BENCHMARKS.md")
    rows = [report.Row("train", "x", "2.00x", ">= 2x", True)]
    report.write(path, report.render(rows, "python -m benchmarks", "cpu", "today", True))
    with open(path, "a") as f:
        f.write("\n## Profile notes (kept)\n")
    report.write(path, report.render([], "python -m benchmarks --quick", "cpu", "today", False))
    text = open(path).read()
    assert "## Profile notes (kept)" in text and "--quick" in text and "2.00x" not in text
    assert text.count(report.START) == 1 and "Partial" in text


def test_cli_rejects_unknown_sections():
    assert cli.parse_args(["--only", "train,eval"]).only == ["train", "eval"]
    with pytest.raises(SystemExit):
        cli.parse_args(["--only", "trian"])
