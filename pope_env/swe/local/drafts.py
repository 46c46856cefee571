"""Drafts of the local SWE set: the bugs we inject, their issue reports and expert commands.

Each draft names a pinned sdist, the bug as exact text edits of the upstream source (a
one-to-few-line defect), optional test edits (for bugs the project's own suite misses),
the issue text a user would file, and the expert's shell session. ``generate.py`` turns
them into ``instances.jsonl`` / ``trajectories.jsonl``; the loaders never read this file.
"""

from __future__ import annotations

from dataclasses import dataclass

from pope_env.swe.trajectories import SUBMIT

INFLECTION = ("inflection", "0.5.1", "1a29730d366e996aaacffb2f1f1cb9593dc38e2ddd30c91250c6dde09ea9b417")
TOOLZ = ("toolz", "1.0.0", "2c86e3d9a04798ac556793bced838816296a2f085017664e4995cb40a1047a02")
MORE_ITERTOOLS = ("more-itertools", "10.5.0",
                  "5482bfef7849c25dc3c6dd53a6173ae4795da2a41a80faea6700d9f5846c5da6")

PYTEST = "python3 -m pytest -q -p no:cacheprovider"


@dataclass(frozen=True)
class Draft:
    """One local instance before generation (see the module docstring)."""

    instance_id: str
    repo: str
    source: tuple[str, str, str]
    bug_edits: tuple[tuple[str, str, str], ...]
    test_files: tuple[str, ...]
    problem_statement: str
    trajectory: tuple[tuple[str, str], ...]
    test_edits: tuple[tuple[str, str, str], ...] = ()
    python_deps: tuple[str, ...] = ()
    hints_text: str = ""
    created_at: str = "2026-11-22T00:00:00Z"


def _python_edit(path: str, old: str, new: str) -> str:
    """An edit command as an expert types it: a short Python script in a heredoc."""
    return (f"python3 - <<'EOF'\nfrom pathlib import Path\np = Path({path!r})\n"
            f"s = p.read_text()\nassert s.count({old!r}) == 1\n"
            f"p.write_text(s.replace({old!r}, {new!r}))\nEOF")


INFLECTION_PY = "inflection/__init__.py"
ITERTOOLZ_PY = "toolz/itertoolz.py"
DICTTOOLZ_PY = "toolz/dicttoolz.py"
MORE_PY = "more_itertools/more.py"

DRAFTS: tuple[Draft, ...] = (
    # ------------------------------------------------------------------ inflection
    Draft(
        instance_id="jpvanhal__inflection-ordinal-teens",
        repo="jpvanhal/inflection",
        source=INFLECTION,
        bug_edits=((INFLECTION_PY, "    if number % 100 in (11, 12, 13):",
                    "    if number % 10 in (11, 12, 13):"),),
        test_files=("test_inflection.py",),
        problem_statement="""\
ordinalize() gives "11st", "12nd" and "13rd"

I use `inflection.ordinalize` to label ranking positions in a report. Positions 11, 12
and 13 (and 111, 112, 1013, ...) come out wrong:

```python
>>> import inflection
>>> inflection.ordinalize(11), inflection.ordinalize(12), inflection.ordinalize(13)
('11st', '12nd', '13rd')
>>> inflection.ordinal(111)
'st'
```

Expected `'11th'`, `'12th'`, `'13th'` and `'th'`: in English the teens always take "th",
as the docstring itself shows for `ordinal(-11)`. Other numbers (1st, 2nd, 23rd, 101st)
are fine. inflection 0.5.1, Python 3.11.
""",
        trajectory=(
            ("Look at the layout of the project.", "ls"),
            ("Find where ordinal suffixes are computed.",
             "grep -n \"def ordinal\" -A 30 inflection/__init__.py"),
            ("Reproduce the report.",
             "python3 -c \"import inflection; print([inflection.ordinalize(n) for n in (1, 11, 12, 13, 111, 23)])\""),
            ("The teens check takes number % 10, which is never 11-13; it must be number % 100.",
             "sed -i 's/if number % 10 in (11, 12, 13):/if number % 100 in (11, 12, 13):/' inflection/__init__.py"),
            ("Check the fix on the reported values.",
             "python3 -c \"import inflection; print([inflection.ordinalize(n) for n in (1, 11, 12, 13, 111, 23)])\""),
            ("Run the ordinal tests.", f"{PYTEST} test_inflection.py -k ordinal"),
            ("Review the change.", "git diff"),
            ("The fix is complete.", SUBMIT),
        ),
    ),
    Draft(
        instance_id="jpvanhal__inflection-humanize-id-suffix",
        repo="jpvanhal/inflection",
        source=INFLECTION,
        bug_edits=((INFLECTION_PY, '    word = re.sub(r"_id$", "", word)',
                    '    word = re.sub(r"_id", "", word)'),),
        test_edits=(("test_inflection.py", '''def test_humanize(underscore, human):
    assert human == inflection.humanize(underscore)
''', '''def test_humanize(underscore, human):
    assert human == inflection.humanize(underscore)


def test_humanize_strips_only_a_trailing_id():
    assert inflection.humanize("user_identity") == "User identity"
    assert inflection.humanize("paid_idle_time") == "Paid idle time"
    assert inflection.humanize("valid_id") == "Valid"
'''),),
        test_files=("test_inflection.py",),
        problem_statement="""\
humanize() mangles column names that contain "_id" in the middle

We build form labels from database column names with `inflection.humanize`. Columns whose
name has `_id` somewhere other than at the end lose letters:

```python
>>> inflection.humanize("user_identity")
'Userentity'
>>> inflection.humanize("paid_idle_time")
'Paidle time'
```

I expected `'User identity'` and `'Paid idle time'`. The documentation says humanize strips
a *trailing* `"_id"` (`humanize("author_id") == 'Author'`, which still works), so words
that merely start with "id" should be left alone.
""",
        trajectory=(
            ("Locate humanize.", "grep -n \"def humanize\" -A 20 inflection/__init__.py"),
            ("Reproduce with the names from the report.",
             "python3 -c \"import inflection; print(inflection.humanize('user_identity')); print(inflection.humanize('paid_idle_time'))\""),
            ("The regex removes every '_id', not only a trailing one: anchor it at the end.",
             _python_edit(INFLECTION_PY, 're.sub(r"_id", "", word)', 're.sub(r"_id$", "", word)')),
            ("Check the reported names and the documented case.",
             "python3 -c \"import inflection; print(inflection.humanize('user_identity'), '|', inflection.humanize('author_id'))\""),
            ("Run the humanize tests.", f"{PYTEST} test_inflection.py -k humanize"),
            ("Done.", SUBMIT),
        ),
    ),
    Draft(
        instance_id="jpvanhal__inflection-parameterize-trailing-separator",
        repo="jpvanhal/inflection",
        source=INFLECTION,
        bug_edits=((INFLECTION_PY,
                    '''string = re.sub(r"(?i)^{sep}|{sep}$".format(sep=re_sep), '', string)''',
                    '''string = re.sub(r"(?i)^{sep}".format(sep=re_sep), '', string)'''),),
        test_edits=(("test_inflection.py",
                     '''@pytest.mark.parametrize(("string", "tableized"), STRING_TO_TABLEIZE)''',
                     '''def test_parameterize_strips_the_trailing_separator():
    assert inflection.parameterize("Hello, world!") == "hello-world"
    assert inflection.parameterize("Trailing!@#", separator="_") == "trailing"
    assert inflection.parameterize("Hello, world!", separator="--") == "hello--world"


@pytest.mark.parametrize(("string", "tableized"), STRING_TO_TABLEIZE)'''),),
        test_files=("test_inflection.py",),
        problem_statement="""\
parameterize() leaves a trailing dash in slugs

Slugs made from titles that end in punctuation keep a separator at the end:

```python
>>> import inflection
>>> inflection.parameterize("Hello, world!")
'hello-world-'
>>> inflection.parameterize("Trailing bad characters!@#", separator="_")
'trailing_bad_characters_'
```

This gives URLs like `/posts/hello-world-`. A leading separator is stripped correctly
(`parameterize("!@#Leading")` gives `'leading'`), so I expected the trailing one to be
stripped as well: `'hello-world'`.
""",
        trajectory=(
            ("Find parameterize.", "grep -rn \"def parameterize\" inflection/"),
            ("Read its body.", "sed -n '/^def parameterize/,/return string.lower()/p' inflection/__init__.py"),
            ("Reproduce.",
             "python3 -c \"import inflection; print(repr(inflection.parameterize('Hello, world!')))\""),
            ("Only the leading separator is removed; the regex needs the trailing alternative too.",
             "git apply <<'PATCH'\n"
             "--- a/inflection/__init__.py\n"
             "+++ b/inflection/__init__.py\n"
             "@@ -275,7 +275,7 @@ def parameterize(string: str, separator: str = '-') -> str:\n"
             "         # No more than one of the separator in a row.\n"
             "         string = re.sub(r'%s{2,}' % re_sep, separator, string)\n"
             "         # Remove leading/trailing separator.\n"
             "-        string = re.sub(r\"(?i)^{sep}\".format(sep=re_sep), '', string)\n"
             "+        string = re.sub(r\"(?i)^{sep}|{sep}$\".format(sep=re_sep), '', string)\n"
             " \n"
             "     return string.lower()\n"
             " \n"
             "PATCH"),
            ("Check the reported title.",
             "python3 -c \"import inflection; print(repr(inflection.parameterize('Hello, world!')))\""),
            ("Run the parameterize tests.", f"{PYTEST} test_inflection.py -k parameterize"),
            ("Submit.", SUBMIT),
        ),
    ),
    Draft(
        instance_id="jpvanhal__inflection-underscore-digits",
        repo="jpvanhal/inflection",
        source=INFLECTION,
        bug_edits=((INFLECTION_PY, '''word = re.sub(r"([a-z\\d])([A-Z])", r'\\1_\\2', word)''',
                    '''word = re.sub(r"([a-z])([A-Z])", r'\\1_\\2', word)'''),),
        test_files=("test_inflection.py",),
        problem_statement="""\
underscore() does not split a word after a digit

```python
>>> import inflection
>>> inflection.underscore("Area51Controller")
'area51controller'
>>> inflection.underscore("Http2Server")
'http2server'
```

Expected `'area51_controller'` and `'http2_server'`, like Rails' `underscore` (and like
`camelize("area51_controller")` round-trips). Table names generated with `tableize` from
such class names are wrong because of this.
""",
        trajectory=(
            ("Look at the package.", "ls inflection"),
            ("Read underscore().", "sed -n '/^def underscore/,/return word.lower()/p' inflection/__init__.py"),
            ("Reproduce.",
             "python3 -c \"import inflection; print(inflection.underscore('Area51Controller'), inflection.underscore('Http2Server'))\""),
            ("The lower-to-upper boundary regex only accepts a letter before the capital; digits must count too.",
             _python_edit(INFLECTION_PY, '''r"([a-z])([A-Z])"''', '''r"([a-z\\d])([A-Z])"''')),
            ("Check.",
             "python3 -c \"import inflection; print(inflection.underscore('Area51Controller'), inflection.underscore('Http2Server'))\""),
            ("Run the underscore and camelize tests.", f"{PYTEST} test_inflection.py -k 'underscore or camelize'"),
            ("Done.", SUBMIT),
        ),
    ),
    # ------------------------------------------------------------------ toolz
    Draft(
        instance_id="pytoolz__toolz-dissoc-missing-key",
        repo="pytoolz/toolz",
        source=TOOLZ,
        bug_edits=((DICTTOOLZ_PY, """        for key in keys:
            if key in d2:
                del d2[key]
""", """        for key in keys:
            del d2[key]
"""),),
        test_edits=(("toolz/tests/test_dicttoolz.py", '''def test_environ():''', '''def test_dissoc_ignores_missing_keys():
    d = {'a': 1, 'b': 2, 'c': 3, 'd': 4}
    assert dissoc(d, 'x') == d
    assert dissoc(d, 'a', 'x') == {'b': 2, 'c': 3, 'd': 4}
    assert d == {'a': 1, 'b': 2, 'c': 3, 'd': 4}


def test_environ():'''),),
        test_files=("toolz/tests/test_dicttoolz.py",),
        problem_statement="""\
dissoc raises KeyError for a missing key on larger dicts

The docstring says `dissoc({'x': 1}, 'y')  # Ignores missing keys`, and that works for
tiny dicts, but as soon as the dict has a few entries a missing key raises:

```python
>>> from toolz import dissoc
>>> dissoc({'a': 1, 'b': 2, 'c': 3}, 'z')
Traceback (most recent call last):
  ...
KeyError: 'z'
```

Expected `{'a': 1, 'b': 2, 'c': 3}`. We call `dissoc(record, *optional_fields)` on records
that may or may not have those fields, so this breaks in production depending on the
size of the record. toolz 1.0.0.
""",
        trajectory=(
            ("Find dissoc.", "grep -rn \"def dissoc\" toolz/"),
            ("Read it.", "sed -n '/^def dissoc/,/return d2/p' toolz/dicttoolz.py"),
            ("Reproduce.",
             "python3 -c \"from toolz import dissoc; print(dissoc({'a': 1, 'b': 2, 'c': 3}, 'z'))\""),
            ("The fast path deletes keys without checking they exist; guard the delete.",
             _python_edit(DICTTOOLZ_PY, "        for key in keys:\n            del d2[key]\n",
                          "        for key in keys:\n            if key in d2:\n                del d2[key]\n")),
            ("Check.",
             "python3 -c \"from toolz import dissoc; print(dissoc({'a': 1, 'b': 2, 'c': 3}, 'z'))\""),
            ("Run the dicttoolz tests.", f"{PYTEST} toolz/tests/test_dicttoolz.py"),
            ("Submit.", SUBMIT),
        ),
    ),
    Draft(
        instance_id="pytoolz__toolz-partition-all-padding",
        repo="pytoolz/toolz",
        source=TOOLZ,
        bug_edits=((ITERTOOLZ_PY, "    if prev[-1] is no_pad:", "    if prev[0] is no_pad:"),),
        test_files=("toolz/tests/test_itertoolz.py",),
        problem_statement="""\
partition_all leaks the '__no__pad__' sentinel into the last chunk

```python
>>> from toolz import partition_all
>>> list(partition_all(3, range(5)))
[(0, 1, 2), (3, 4, '__no__pad__')]
>>> list(partition_all(2, iter([1, 2, 3])))
[(1, 2), (3, '__no__pad__')]
```

The docs say "The final tuple may be shorter to accommodate extra elements", so I
expected `[(0, 1, 2), (3, 4)]` and `[(1, 2), (3,)]`. Batching database writes with
`partition_all(500, rows)` now tries to insert the string `'__no__pad__'`.
""",
        trajectory=(
            ("Find partition_all.", "grep -n \"def partition_all\" toolz/itertoolz.py"),
            ("Read it.", "sed -n '/^def partition_all/,/^def count/p' toolz/itertoolz.py"),
            ("Reproduce.",
             "python3 -c \"from toolz import partition_all; print(list(partition_all(3, range(5))))\""),
            ("Padding fills the end of the last tuple, so its last element, not its first, tells whether it is partial.",
             "sed -i 's/if prev\\[0\\] is no_pad:/if prev[-1] is no_pad:/' toolz/itertoolz.py"),
            ("Check lists and iterators.",
             "python3 -c \"from toolz import partition_all; print(list(partition_all(3, range(5))), list(partition_all(2, iter([1, 2, 3]))))\""),
            ("Run the partition tests.", f"{PYTEST} toolz/tests/test_itertoolz.py -k partition"),
            ("Submit.", SUBMIT),
        ),
    ),
    Draft(
        instance_id="pytoolz__toolz-get-in-index-error",
        repo="pytoolz/toolz",
        source=TOOLZ,
        bug_edits=((DICTTOOLZ_PY, "    except (KeyError, IndexError, TypeError):",
                    "    except (KeyError, TypeError):"),),
        test_edits=(("toolz/tests/test_dicttoolz.py", '''def test_environ():''', '''def test_get_in_out_of_range_index_gives_default():
    from toolz.dicttoolz import get_in
    assert get_in(['a', 5], {'a': [1, 2]}) is None
    assert get_in([3], [1, 2], default='missing') == 'missing'
    assert get_in(['a', 1], {'a': [1, 2]}) == 2


def test_environ():'''),),
        test_files=("toolz/tests/test_dicttoolz.py",),
        problem_statement="""\
get_in raises IndexError instead of returning the default

`get_in` is documented to return `default` when the path does not exist, and it does for
missing dict keys, but not for list indices that are out of range:

```python
>>> from toolz import get_in
>>> get_in(['a', 'b'], {'a': {}}, default=0)
0
>>> get_in(['items', 3, 'name'], {'items': [{'name': 'x'}]}, default=None)
Traceback (most recent call last):
  ...
IndexError: list index out of range
```

I expected `None`. With `no_default=True` raising is fine, but the default case should
never raise for a missing path.
""",
        trajectory=(
            ("Find get_in.", "grep -rn \"def get_in\" toolz/"),
            ("Read it.", "sed -n '/^def get_in/,/return default/p' toolz/dicttoolz.py"),
            ("Reproduce.",
             "python3 -c \"from toolz import get_in; print(get_in(['items', 3, 'name'], {'items': [{'name': 'x'}]}))\""),
            ("reduce(getitem) raises IndexError for lists; it must be caught like KeyError.",
             "sed -i 's/    except (KeyError, TypeError):/    except (KeyError, IndexError, TypeError):/' toolz/dicttoolz.py"),
            ("Check.",
             "python3 -c \"from toolz import get_in; print(get_in(['items', 3, 'name'], {'items': [{'name': 'x'}]}, default='missing'))\""),
            ("Run the dicttoolz tests.", f"{PYTEST} toolz/tests/test_dicttoolz.py"),
            ("Submit.", SUBMIT),
        ),
    ),
    Draft(
        instance_id="pytoolz__toolz-interpose-leading-separator",
        repo="pytoolz/toolz",
        source=TOOLZ,
        bug_edits=((ITERTOOLZ_PY, """    inposed = concat(zip(itertools.repeat(el), seq))
    next(inposed)
    return inposed
""", """    inposed = concat(zip(itertools.repeat(el), seq))
    return inposed
"""),),
        test_files=("toolz/tests/test_itertoolz.py",),
        problem_statement="""\
interpose puts the separator before the first element

```python
>>> from toolz import interpose
>>> list(interpose(', ', ['a', 'b', 'c']))
[', ', 'a', ', ', 'b', ', ', 'c']
```

The docstring example says `list(interpose("a", [1, 2, 3]))` is `[1, 'a', 2, 'a', 3]`: the
element should only go *between* items. Joining with `''.join(interpose(...))` now gives
`', a, b, c'`.
""",
        trajectory=(
            ("Find interpose.", "grep -n \"def interpose\" -A 10 toolz/itertoolz.py"),
            ("Reproduce.",
             "python3 -c \"from toolz import interpose; print(list(interpose('a', [1, 2, 3])))\""),
            ("zip(repeat(el), seq) starts with the separator; drop that first item.",
             "git apply <<'PATCH'\n"
             "--- a/toolz/itertoolz.py\n"
             "+++ b/toolz/itertoolz.py\n"
             "@@ -530,6 +530,7 @@ def interpose(el, seq):\n"
             "     [1, 'a', 2, 'a', 3]\n"
             "     \"\"\"\n"
             "     inposed = concat(zip(itertools.repeat(el), seq))\n"
             "+    next(inposed)\n"
             "     return inposed\n"
             " \n"
             " \n"
             "PATCH"),
            ("Check with the docstring's example and with strings.",
             "python3 -c \"from toolz import interpose; print(list(interpose('a', [1, 2, 3])), ''.join(interpose(', ', 'abc')))\""),
            ("Run the interpose tests.", f"{PYTEST} toolz/tests/test_itertoolz.py -k interpose"),
            ("Submit.", SUBMIT),
        ),
    ),
    # ------------------------------------------------------------------ more-itertools
    Draft(
        instance_id="more-itertools__more-itertools-last-empty-reversible",
        repo="more-itertools/more-itertools",
        source=MORE_ITERTOOLS,
        bug_edits=((MORE_PY, "    except (IndexError, TypeError, StopIteration):\n        if default is _marker:\n            raise ValueError(\n                'last() was called",
                    "    except (IndexError, TypeError):\n        if default is _marker:\n            raise ValueError(\n                'last() was called"),),
        test_edits=(("tests/test_more.py", '''class NthOrLastTests(TestCase):''', '''class LastEmptyReversibleTests(TestCase):
    def test_empty_dict_default(self):
        self.assertEqual(mi.last({}, 'x'), 'x')

    def test_empty_dict_no_default(self):
        with self.assertRaises(ValueError):
            mi.last({})

    def test_empty_reversed_view(self):
        self.assertIsNone(mi.last({}.keys(), None))


class NthOrLastTests(TestCase):'''),),
        test_files=("tests/test_more.py",),
        problem_statement="""\
last() raises StopIteration for empty dicts instead of returning the default

```python
>>> import more_itertools as mi
>>> mi.last([], 'empty')
'empty'
>>> mi.last({}, 'empty')
Traceback (most recent call last):
  ...
StopIteration
```

`last({}, 'empty')` should return `'empty'`, and `last({})` without a default should raise
the documented `ValueError`, as for lists. Inside a generator the bare `StopIteration`
even turns into a confusing `RuntimeError: generator raised StopIteration`. Same for
`dict.keys()` / `dict.values()` views. more-itertools 10.5.0, Python 3.11.
""",
        trajectory=(
            ("Find last().", "grep -n \"^def last\" more_itertools/more.py"),
            ("Read it.", "sed -n '/^def last/,/^def nth_or_last/p' more_itertools/more.py"),
            ("Reproduce with an empty dict.",
             "python3 -c \"import more_itertools as mi; print(mi.last({}, 'empty'))\""),
            ("Empty reversible objects make next(reversed(...)) raise StopIteration, which is not caught.",
             "sed -i '/^def last/,/^def nth_or_last/ s/except (IndexError, TypeError):/except (IndexError, TypeError, StopIteration):/' more_itertools/more.py"),
            ("Check both the default and the no-default case.",
             "python3 -c \"import more_itertools as mi; print(mi.last({}, 'empty'), mi.last({}.values(), None))\""),
            ("Run the last() tests.", f"{PYTEST} tests/test_more.py -k Last"),
            ("Submit.", SUBMIT),
        ),
    ),
    Draft(
        instance_id="more-itertools__more-itertools-divide-drops-items",
        repo="more-itertools/more-itertools",
        source=MORE_ITERTOOLS,
        bug_edits=((MORE_PY, "        stop += q + 1 if i <= r else q", "        stop += q + 1 if i < r else q"),),
        test_files=("tests/test_more.py",),
        problem_statement="""\
divide() silently drops items when the length is not a multiple of n

```python
>>> import more_itertools as mi
>>> [list(c) for c in mi.divide(3, range(10))]
[[0, 1, 2], [3, 4, 5], [6, 7, 8]]
>>> [list(c) for c in mi.divide(2, [1, 2, 3])]
[[1], [2]]
```

Item `9` (and `3`) is lost. The docs say the first parts get one extra item when the
length is not divisible, so I expected `[[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]` and
`[[1, 2], [3]]`. We use divide() to shard work across processes and some jobs never ran.
""",
        trajectory=(
            ("Find divide().", "grep -n \"^def divide\" more_itertools/more.py"),
            ("Read it.", "sed -n '/^def divide/,/return ret/p' more_itertools/more.py"),
            ("Reproduce.",
             "python3 -c \"import more_itertools as mi; print([list(c) for c in mi.divide(3, range(10))])\""),
            ("The first r parts (i = 1..r) need q + 1 items: the comparison must be i <= r.",
             "sed -i 's/stop += q + 1 if i < r else q/stop += q + 1 if i <= r else q/' more_itertools/more.py"),
            ("Check.",
             "python3 -c \"import more_itertools as mi; print([list(c) for c in mi.divide(3, range(10))], [list(c) for c in mi.divide(2, [1, 2, 3])])\""),
            ("Run the divide tests.", f"{PYTEST} tests/test_more.py -k Divide"),
            ("Submit.", SUBMIT),
        ),
    ),
    Draft(
        instance_id="more-itertools__more-itertools-padded-next-multiple",
        repo="more-itertools/more-itertools",
        source=MORE_ITERTOOLS,
        bug_edits=((MORE_PY, "                yield islice(iterable_with_repeat, n - 1)",
                    "                yield islice(iterable_with_repeat, n)"),),
        test_files=("tests/test_more.py",),
        problem_statement="""\
padded(..., next_multiple=True) pads to the wrong length

```python
>>> import more_itertools as mi
>>> list(mi.padded([1, 2, 3, 4, 5], '*', 3, next_multiple=True))
[1, 2, 3, 4, 5, '*', '*', '*']
>>> list(mi.padded([1, 2, 3], 0, 3, next_multiple=True))
[1, 2, 3, 0]
```

With `next_multiple=True` the output length should be the next multiple of `n`: I
expected `[1, 2, 3, 4, 5, '*']` (6 items) and `[1, 2, 3]` (already a multiple of 3). We
use it to pad records to a block size and the blocks come out misaligned.
""",
        trajectory=(
            ("Read padded().", "sed -n '/^def padded/,/^def repeat_each/p' more_itertools/more.py"),
            ("Reproduce.",
             "python3 -c \"import more_itertools as mi; print(list(mi.padded([1, 2, 3, 4, 5], '*', 3, next_multiple=True)))\""),
            ("Each block is the first item plus the rest of the block: n - 1 more items, not n.",
             _python_edit(MORE_PY, "yield islice(iterable_with_repeat, n)\n",
                          "yield islice(iterable_with_repeat, n - 1)\n")),
            ("Check.",
             "python3 -c \"import more_itertools as mi; print(list(mi.padded([1, 2, 3, 4, 5], '*', 3, next_multiple=True)), list(mi.padded([1, 2, 3], 0, 3, next_multiple=True)))\""),
            ("Run the padded tests.", f"{PYTEST} tests/test_more.py -k Padded"),
            ("Submit.", SUBMIT),
        ),
    ),
    Draft(
        instance_id="more-itertools__more-itertools-adjacent-window",
        repo="more-itertools/more-itertools",
        source=MORE_ITERTOOLS,
        bug_edits=((MORE_PY, "    adjacent_to_selected = map(any, windowed(selected, 2 * distance + 1))",
                    "    adjacent_to_selected = map(any, windowed(selected, 2 * distance))"),),
        test_files=("tests/test_more.py",),
        problem_statement="""\
adjacent() flags the wrong items

I use `adjacent` to show log lines around matches (like `grep -C`):

```python
>>> import more_itertools as mi
>>> list(mi.adjacent(lambda x: x == 3, range(6)))
[(False, 0), (False, 1), (False, 2), (True, 3), (True, 4), (False, 5)]
```

Item 2 is right before the match but is not flagged, and with `distance=2` the window is
lopsided too. Expected, as in the docstring's example:
`[(False, 0), (False, 1), (True, 2), (True, 3), (True, 4), (False, 5)]`.
""",
        trajectory=(
            ("Find adjacent().", "grep -n \"^def adjacent\" more_itertools/more.py"),
            ("Read its implementation.",
             "sed -n '/^def adjacent/,/^def groupby_transform/p' more_itertools/more.py | tail -12"),
            ("Reproduce.",
             "python3 -c \"import more_itertools as mi; print(list(mi.adjacent(lambda x: x == 3, range(6))))\""),
            ("A window centred on an item spans distance on each side: 2 * distance + 1 items.",
             "git apply <<'PATCH'\n"
             "--- a/more_itertools/more.py\n"
             "+++ b/more_itertools/more.py\n"
             "@@ -2053,7 +2053,7 @@ def adjacent(predicate, iterable, distance=1):\n"
             "     i1, i2 = tee(iterable)\n"
             "     padding = [False] * distance\n"
             "     selected = chain(padding, map(predicate, i1), padding)\n"
             "-    adjacent_to_selected = map(any, windowed(selected, 2 * distance))\n"
             "+    adjacent_to_selected = map(any, windowed(selected, 2 * distance + 1))\n"
             "     return zip(adjacent_to_selected, i2)\n"
             " \n"
             " \n"
             "PATCH"),
            ("Check.",
             "python3 -c \"import more_itertools as mi; print(list(mi.adjacent(lambda x: x == 3, range(6))))\""),
            ("Run the adjacent tests.", f"{PYTEST} tests/test_more.py -k Adjacent"),
            ("Submit.", SUBMIT),
        ),
    ),
)
