"""The one way HTML is made in :mod:`theoryx.ui`: trusted templates, escaped values.

A template is a literal string of this package with ``{name}`` placeholders. :func:`html` fills
them with :func:`escape` applied to every value, unless the value already is :class:`Markup`
(HTML that was built the same way). Nothing a user, a processor or the store controls (ids,
refs, plan keys, output paths, log text, JSON) can therefore reach the page unescaped: it would
have to be a ``Markup``, and only this module's functions make those.
"""

from __future__ import annotations

import html as _html
from collections.abc import Iterable, Mapping
from urllib.parse import quote, urlencode


class Markup(str):
    """A string of HTML that is safe to insert as it is (made by :func:`html`, :func:`escape`
    or :func:`join`)."""

    __slots__ = ()


def escape(value: object) -> Markup:
    """``value`` as HTML text: ``& < > " '`` escaped; :class:`Markup` passes through unchanged."""
    if isinstance(value, Markup):
        return value
    return Markup(_html.escape("" if value is None else str(value), quote=True))


def html(template: str, /, **values: object) -> Markup:
    """``template`` (trusted, with ``{name}`` placeholders) filled with escaped ``values``."""
    return Markup(template.format(**{k: escape(v) for k, v in values.items()}))


def join(parts: Iterable[object], sep: str = "") -> Markup:
    """The escaped ``parts`` joined by ``sep`` (a trusted literal)."""
    return Markup(sep.join(escape(p) for p in parts))


def url(path: str, query: Mapping[str, object] | None = None) -> str:
    """A server-relative URL: ``path`` with each segment percent-encoded (``/`` kept) and the
    query's non-empty values URL-encoded. The result still goes through :func:`escape` when it
    is put into an attribute."""
    encoded = quote(path, safe="/:@")
    pairs = [(k, str(v)) for k, v in (query or {}).items() if v not in (None, "")]
    return encoded + ("?" + urlencode(pairs) if pairs else "")
