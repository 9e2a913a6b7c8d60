// Live refresh, optional: every page works without it. An element #live with
// data-refresh="N" (seconds, > 0) is re-fetched from the same URL every N s
// while the tab is visible, and swapped in place. No other effect.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.fetch || !window.DOMParser) { return; }
  var seconds = parseInt(live.getAttribute("data-refresh") || "0", 10);
  if (!(seconds > 0)) { return; }
  function refresh() {
    if (document.hidden) { return; }
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Clout-Refresh": "1" } })
      .then(function (r) {
        if (!r.ok || r.redirected) { throw new Error("refresh: " + r.status); }
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live");
        if (fresh) { live.innerHTML = fresh.innerHTML; live.setAttribute("data-refreshed", String(Date.now())); }
      })
      .catch(function () { /* keep what is shown; try again next time */ });
  }
  window.setInterval(refresh, seconds * 1000);
})();
