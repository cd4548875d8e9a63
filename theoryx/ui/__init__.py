"""``theoryx ui``: a local, read-only web page over a home.

One responsibility per module:

- :mod:`theoryx.ui.server`: the HTTP server (standard library ``ThreadingHTTPServer``), bound to
  127.0.0.1 unless told otherwise; GET and HEAD only, every other method is 405;
- :mod:`theoryx.ui.routes`: URL -> handler, with strict validation of every id, path and page
  parameter (400 for malformed values and traversal attempts, 404 for unknown ids, 500 without
  details for anything unexpected);
- :mod:`theoryx.ui.data`: read models over the store, through the tables' owner modules, every
  list paginated in the database;
- :mod:`theoryx.ui.pages`: the HTML of each page; :mod:`theoryx.ui.markup`: the escaping
  template helper every piece of HTML goes through; :mod:`theoryx.ui.charts`: SVG charts drawn
  on the server;
- ``static/``: the stylesheet and the small script that polls for new runs, served from the
  installed package (nothing is ever loaded from the network).

Nothing here writes to the store. Reading a blob hashes it (a corrupt one is quarantined by the
CAS, as every read does).
"""
