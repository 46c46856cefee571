"""Build of the optional C extension ``pope_env.rewards._seqmatch``.

All metadata lives in pyproject.toml; this file only declares the extension. It is
``optional``: without a C compiler the build still succeeds and
:mod:`pope_env.rewards.similarity` falls back to :mod:`difflib` (same values, slower) with a
one-time warning.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "pope_env.rewards._seqmatch",
            sources=["pope_env/rewards/_seqmatch.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
