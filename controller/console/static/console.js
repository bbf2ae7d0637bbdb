// canaryflow console: keep the live part of a page current, and confirm actions. No framework.
"use strict";
(function () {
  const body = document.body;
  const every = Number(body.dataset.refreshMs || 2000);
  const live = document.getElementById("live");
  if (live) {
    const refresh = async () => {
      const params = new URLSearchParams(location.search);
      params.set("fragment", "1");
      try {
        const resp = await fetch(location.pathname + "?" + params.toString(), {
          headers: { Accept: "text/html" }, credentials: "same-origin", cache: "no-store",
        });
        if (resp.ok) { live.innerHTML = await resp.text(); live.dataset.updated = String(Date.now()); }
        else if (resp.status === 401 || resp.status === 303) { location.reload(); return; }
      } catch (e) { /* the controller restarting: try again next round */ }
      setTimeout(refresh, every);
    };
    setTimeout(refresh, every);
  }
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (ev) => {
      if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
    });
  }
})();
