"""The drafts of the local SWE set (drafts.toml): they load, they are what the committed
data files were generated from, and bad entries raise errors that name the draft and field."""

from __future__ import annotations

import pytest

from pope_env.errors import DataFormatError
from pope_env.swe.instances import SdistSource, load_instances
from pope_env.swe.local.drafts import PYTEST, Draft, load_drafts, python_edit_command
from pope_env.swe.trajectories import SUBMIT, load_trajectories

DRAFTS = load_drafts()


def test_drafts_are_the_sources_of_the_generated_local_set():
    instances = load_instances("local")
    trajectories = load_trajectories("local")
    assert [d.instance_id for d in DRAFTS] == [inst.instance_id for inst in instances]
    for draft, inst in zip(DRAFTS, instances):
        assert inst.repo == draft.repo
        assert inst.problem_statement == draft.problem_statement.strip() + "\n"
        assert inst.local.source == SdistSource(*draft.source)
        assert inst.local.test_files == draft.test_files
        assert inst.local.python_deps == draft.python_deps
        assert (inst.hints_text, inst.created_at) == (draft.hints_text, draft.created_at)
        # every command byte for byte, the pytest / python_edit / submit forms included
        recorded = [(step.thought, step.command) for step in trajectories[draft.instance_id]]
        assert recorded == list(draft.trajectory)


def test_each_step_form_spells_the_command_it_documents():
    commands = [command for draft in DRAFTS for _, command in draft.trajectory]
    assert all(draft.trajectory[-1][1] == SUBMIT for draft in DRAFTS)
    assert any(c.startswith(PYTEST + " ") for c in commands)
    edit = python_edit_command("a.py", "x = 1\n", "x = 2\n")
    assert edit == ("python3 - <<'EOF'\nfrom pathlib import Path\np = Path('a.py')\n"
                    "s = p.read_text()\nassert s.count('x = 1\\n') == 1\n"
                    "p.write_text(s.replace('x = 1\\n', 'x = 2\\n'))\nEOF")
    assert any(c.startswith("python3 - <<'EOF'\nfrom pathlib import Path\n") for c in commands)


VALID = '''
[sources.pkg]
name = "pkg"
version = "1.0"
sha256 = "ab"

[[drafts]]
instance_id = "o__pkg-bug"
repo = "o/pkg"
source = "pkg"
test_files = ["tests/test_pkg.py"]
problem_statement = "It breaks."

[[drafts.bug_edits]]
path = "pkg.py"
old = "a"
new = "b"

[[drafts.trajectory]]
thought = "Look."
command = "ls"

[[drafts.trajectory]]
thought = "Fix."
[drafts.trajectory.python_edit]
path = "pkg.py"
old = "b"
new = "a"

[[drafts.trajectory]]
thought = "Test."
pytest = "tests/test_pkg.py"

[[drafts.trajectory]]
thought = "Done."
submit = true
'''


def _load(tmp_path, text):
    path = tmp_path / "drafts.toml"
    path.write_text(text, encoding="utf-8")
    return load_drafts(path)


def test_a_small_drafts_file_loads_into_drafts(tmp_path):
    (draft,) = _load(tmp_path, VALID)
    assert draft == Draft(
        instance_id="o__pkg-bug", repo="o/pkg", source=("pkg", "1.0", "ab"),
        bug_edits=(("pkg.py", "a", "b"),), test_files=("tests/test_pkg.py",),
        problem_statement="It breaks.",
        trajectory=(("Look.", "ls"), ("Fix.", python_edit_command("pkg.py", "b", "a")),
                    ("Test.", f"{PYTEST} tests/test_pkg.py"), ("Done.", SUBMIT)))


@pytest.mark.parametrize(("old", "new", "message"), [
    ('repo = "o/pkg"\n', "", r"drafts\[0\] \(o__pkg-bug\) misses field\(s\) repo"),
    ('repo = "o/pkg"', "repo = 3", r"drafts\[0\] \(o__pkg-bug\): field repo must be a string, got int"),
    ('source = "pkg"', 'source = "nope"', r"field source 'nope' is not a \[sources.KEY\]"),
    ('test_files = ["tests/test_pkg.py"]', 'test_files = "tests/test_pkg.py"',
     r"field test_files must be a list of strings"),
    ('problem_statement = "It breaks."', 'problem_statement = "It breaks."\nproblem = "x"',
     r"drafts\[0\] \(o__pkg-bug\) has unknown field\(s\) problem"),
    ('command = "ls"', 'command = "ls"\npytest = "x"',
     r"trajectory\[0\] must have exactly one of command, pytest, python_edit, submit, got command, pytest"),
    ('submit = true', 'submit = "yes"', r"trajectory\[3\]: field submit must be true"),
    ('old = "b"\nnew = "a"', 'old = "b"', r"trajectory\[1\]: python_edit misses field\(s\) new"),
    ('old = "a"\nnew = "b"', 'old = "a"\nnew = 1', r"bug_edits\[0\]: field new must be a string"),
    ('sha256 = "ab"', "", r"\[sources.pkg\] misses field\(s\) sha256"),
    ("[[drafts]]", "[[drafts]\n", r"is not valid TOML"),
])
def test_bad_entries_raise_errors_naming_the_draft_and_field(tmp_path, old, new, message):
    assert old in VALID
    with pytest.raises(DataFormatError, match=message):
        _load(tmp_path, VALID.replace(old, new, 1))


def test_a_repeated_instance_id_is_refused(tmp_path):
    second = VALID[VALID.index("[[drafts]]"):]
    with pytest.raises(DataFormatError, match="o__pkg-bug appear in more than one draft"):
        _load(tmp_path, VALID + second)

