"""The grader itself, run on scratch copies of the kata: zero for stubs, robust to broken student code."""

import json

from tests.harness.helpers import STUB_MODEL, STUB_SAMPLER, kata_copy, run_pytest

GRADESCOPE_TEST_FIELDS = {"name", "score", "max_score", "output", "visibility"}

ENDLESS_SAMPLER = '''
def sample(model, schedule, shape, generator=None):
    while True:
        pass
'''
HIDDEN_TEST = '''
import pytest

@pytest.mark.level4
@pytest.mark.points(3)
@pytest.mark.visibility("after_published")
def test_instructors_hidden_check(sample):
    assert callable(sample)
'''


def _grade(kata):
    grade = json.loads((kata / "grade.json").read_text())
    assert set(grade) >= {"score", "tests"} and grade["tests"]
    for test in grade["tests"]:
        assert GRADESCOPE_TEST_FIELDS <= set(test)
        assert test["visibility"] in {"visible", "hidden", "after_due_date", "after_published"}
        assert 0 <= test["score"] <= test["max_score"]
    return grade, {t["name"]: t for t in grade["tests"]}


def test_untouched_stubs_score_zero_with_a_readable_table(tmp_path):
    kata = kata_copy(tmp_path, model=STUB_MODEL, sampler=STUB_SAMPLER)
    result = run_pytest(kata, "tests/graded", "--grade-json", "grade.json")
    assert result.returncode != 0
    grade, tests = _grade(kata)
    assert grade["score"] == 0 and grade["max_score"] > 0
    assert all(t["status"] == "failed" for t in grade["tests"])
    assert "not implemented yet" in tests["test_output_is_float32"]["output"]
    assert "uv run python main.py --config configs/fashion_mnist.yaml" in (
        tests["test_validation_loss_at_most_the_references"]["output"])
    for line in ("basics ", "level2 ", "level4 ", "total "):
        assert line in result.stdout, f"the grade table lacks a '{line.strip()}' row"
    assert "Traceback" not in result.stdout


def test_broken_student_code_is_contained_and_extra_tests_are_graded(tmp_path):
    kata = kata_copy(tmp_path, model="import torch\nclass DiffusionModel(torch.nn.Module)\n", sampler=ENDLESS_SAMPLER)
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "test_hidden.py").write_text(HIDDEN_TEST)
    result = run_pytest(kata, "tests/graded/test_model.py", "tests/graded/test_sampler.py",
                        "--grade-json", "grade.json", "-k", "float32 or exactly or hidden",
                        KATA_GRADED_TIMEOUT="3", KATA_EXTRA_TESTS=str(hidden))
    assert result.returncode != 0
    grade, tests = _grade(kata)
    assert "src/model.py, line 2: SyntaxError" in tests["test_output_is_float32"]["output"]
    assert "Timeout" in tests["test_matches_the_reference_sampler_exactly"]["output"]
    assert tests["test_instructors_hidden_check"]["score"] == 3
    assert tests["test_instructors_hidden_check"]["visibility"] == "after_published"
    assert grade["score"] == 3
