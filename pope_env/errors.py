"""Typed errors of pope-env.

Every error a user can trigger with bad input derives from :class:`PopeEnvError`, names the
problem and says how to fix it. Catch ``PopeEnvError`` to handle all of them.
"""

from __future__ import annotations

from collections.abc import Iterable


class PopeEnvError(Exception):
    """Base class of every error pope-env raises on bad input or bad state."""


class UnknownNameError(PopeEnvError, KeyError):
    """An unknown dataset, split, env id, method or problem id was asked for."""

    def __init__(self, kind: str, name: str, known: list[str] | tuple[str, ...] = ()) -> None:
        shown = ", ".join(sorted(known)[:20])
        more = "" if len(known) <= 20 else f", ... ({len(known)} in all)"
        hint = f" Known {kind}s: {shown}{more}." if known else ""
        super().__init__(f"unknown {kind} {name!r}.{hint}")
        self.kind = kind
        self.name = name

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class DataFormatError(PopeEnvError, ValueError):
    """A data file or record is malformed (the message names the file, line and field)."""


class GuidanceFileError(DataFormatError):
    """A guidance or split file is corrupted, truncated or made for another dataset."""


class EnvStateError(PopeEnvError, RuntimeError):
    """An env method was called in the wrong state (e.g. ``step`` before ``reset``)."""


def check_keywords(owner: str, given: Iterable[str], allowed: type) -> None:
    """Refuse keywords that the ``TypedDict`` ``allowed`` does not declare, as Python refuses
    an unknown keyword argument.

    For functions that take a group of keywords as ``**options: Unpack[SomeOptions]`` and
    pass them on: the error names ``owner`` (what the user called) and the known keywords.

    Raises:
        TypeError: an unknown keyword.
    """
    known = set(allowed.__annotations__)
    unknown = sorted(set(given) - known)
    if unknown:
        raise TypeError(f"{owner}() got unexpected keyword argument(s) {unknown}; "
                        f"it takes {', '.join(sorted(known))}")


def check_can_step(started: bool, ended: bool) -> None:
    """The rule every pope-env env keeps: ``step`` needs a ``reset`` first and a running episode.

    Raises:
        EnvStateError: the env was never reset (``started`` false), or its episode has
            ended (``ended`` true); either way the fix is ``env.reset()``.
    """
    if not started:
        raise EnvStateError("step() called before reset(); call env.reset() first")
    if ended:
        raise EnvStateError("the episode has ended; call env.reset() to start a new one")


class ConfigError(PopeEnvError, ValueError):
    """An argument or configuration value is out of range or inconsistent."""


class InvalidActionError(PopeEnvError, TypeError):
    """``step`` got an action of the wrong type (not a ``str`` for a text env, not a token id
    for ``TokenEnv``): a bug in the calling code, not a policy's mistake.

    A well-typed action that is still invalid (too long, a masked token, an unrunnable
    command) does not raise: it ends the episode with the env's ``invalid_action_reward``
    and ``info["invalid_action"]`` (docs/architecture.md, "Invalid actions").
    """


class DependencyError(PopeEnvError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


def require(module: str, extra: str):
    """Import ``module`` or raise :class:`DependencyError` naming ``pip install pope-env[extra]``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise DependencyError(
            f"{module!r} is needed for this feature; install it with "
            f"`pip install 'pope-env[{extra}]'` ({exc})"
        ) from exc
