"""The profile's arithmetic: thunk spans per call, and their HLO shapes and JAX operations."""
from benchmarks import profile

HLO = """
%fused_computation.7 (param_0: f32[4,8]) -> f32[4] {
  ROOT %reduce.1 = f32[4]{0} reduce(%param_0, %c), dimensions={1}, to_apply=%add
}
ENTRY %main (p0: f32[4,8], p1: f32[8,16]) -> f32[4,16] {
  %dot.3 = f32[4,16]{1,0} dot(%p0, %p1), metadata={op_name="jit(f)/dot_general"}
  ROOT %wrapped_multiply.2 = f32[4,16]{1,0} fusion(%dot.3), kind=kLoop, calls=%c
}
"""


def test_thunk_seconds_are_per_call_and_skip_python_frames():
    events = [{"ph": "X", "name": "dot.3", "dur": 3000}, {"ph": "X", "name": "dot.3", "dur": 1000},
              {"ph": "X", "name": "$api.py:1 block_until_ready", "dur": 9000},
              {"ph": "i", "name": "dot.3", "dur": 5000}]
    seconds = profile.thunk_seconds(events, calls=2)
    assert seconds == {"dot.3": 0.002}


def test_instructions_name_shape_and_operation():
    where = profile.instructions(HLO)
    assert where["dot.3"] == ("f32[4,16]", "jit(f)/dot_general")
    assert where["wrapped_multiply.2"] == ("f32[4,16]", "")
    assert where["reduce.1"] == ("f32[4]", "")


def test_table_orders_by_time_and_leaves_out_the_executor():
    seconds = profile.thunk_seconds(
        [{"ph": "X", "name": n, "dur": d} for n, d in
         [("ThunkExecutor::Execute", 10_000), ("dot.3", 2000), ("wrapped_multiply.2", 4000)]], 1)
    lines = profile.table(seconds, profile.instructions(HLO), top=5).splitlines()
    assert "ThunkExecutor" not in "\n".join(lines)
    assert lines[1].split()[:2] == ["4.0", "wrapped_multiply.2"]
    assert lines[2].split()[:3] == ["2.0", "dot.3", "f32[4,16]"]
    assert len(profile.table(seconds, {}, top=1).splitlines()) == 2
