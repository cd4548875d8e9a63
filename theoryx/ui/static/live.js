// theoryx ui: live updates of the Runs page by polling /api/head (same origin, no library).
// When the newest execution, the count or the runs in flight change, the page is fetched again
// and its #live-region (in-flight runs and the table) replaced. Only the first page is live.
(function () {
  "use strict";
  if (document.body.dataset.live !== "1") return;
  var region = document.getElementById("live-region");
  var badge = document.getElementById("live-state");
  if (!region) return;
  var last = null;
  var busy = false;
  var INTERVAL_MS = 2000;

  function key(head) { return [head.newest, head.total, head.in_flight].join("/"); }

  function refresh() {
    return fetch(window.location.href, { headers: { "Accept": "text/html" }, cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("live-region");
        var summary = doc.querySelector(".summary");
        if (fresh) region.replaceChildren.apply(region, Array.from(fresh.childNodes));
        var mine = document.querySelector(".summary");
        if (summary && mine) mine.textContent = summary.textContent;
      });
  }

  function poll() {
    if (busy || document.hidden) return;
    busy = true;
    fetch("/api/head", { cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (head) {
        if (badge) badge.hidden = false;
        var k = key(head);
        var changed = last !== null && k !== last;
        last = k;
        return changed ? refresh() : null;
      })
      .catch(function () { if (badge) badge.hidden = true; })
      .then(function () { busy = false; });
  }

  poll();
  window.setInterval(poll, INTERVAL_MS);
})();
