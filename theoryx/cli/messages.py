"""How the command line words a library error: flags where the library names parameters.

Library errors (:class:`theoryx.errors.TheoryxError`) are neutral: when one names a setting of
the caller, its ``option`` attribute gives the Python parameter and the message spells it the
Python way. This module (click-free, so the fast path may use it) turns those spellings into the
CLI's flags, keeping every ``Error: ...`` line and ``--json`` error object as the CLI always
printed them:

- a message that *starts* with the parameter (``write_prefix must end with /``) names it as
  its subject: ``--write-prefix must end with /``;
- ``force=True`` becomes ``--force``;
- ``adapter='mock'`` becomes ``--adapter mock``.

Only the spellings of the error's own ``option`` are rewritten, so ordinary words elsewhere in
the message are never touched. :class:`~theoryx.errors.PlanNotFound` additionally gets the
commands that create and list plans.
"""

from __future__ import annotations

import re

from theoryx.errors import PlanNotFound, TheoryxError

__all__ = ["flag", "message", "to_dict"]


def flag(option: str) -> str:
    """The CLI flag of Python parameter ``option``: ``write_prefix`` -> ``--write-prefix``."""
    return "--" + option.replace("_", "-")


def message(exc: TheoryxError) -> str:
    """``exc.message`` as the CLI words it (what follows ``Error: ``)."""
    text = exc.message
    if isinstance(exc, PlanNotFound) and exc.plan is not None:
        return (f"no plan {exc.plan!r}; create it with `theoryx plan create {exc.plan} --limit-usd X` "
                "(see `theoryx plan ls`)")
    option = exc.option
    if option is None:
        return text
    name, cli = re.escape(option), flag(option)
    if text.startswith(option + " "):
        text = cli + text[len(option):]
    text = re.sub(rf"\b{name}=True\b", lambda _: cli, text)
    # A quoted value without spaces or quotes: adapter='mock' -> --adapter mock.
    return re.sub(rf"\b{name}='([^'\s]*)'", lambda m: f"{cli} {m.group(1)}", text)


def to_dict(exc: TheoryxError) -> dict[str, str]:
    """The ``error`` object of the CLI's ``--json`` output: :meth:`TheoryxError.to_dict` with
    the CLI's :func:`message`."""
    return {**exc.to_dict(), "message": message(exc)}
