/* flask_observe console: progressive enhancement only; every page works without it. */
(() => {
  "use strict";
  // Waterfall bars: their offset and width come from data-* attributes (the CSP forbids
  // inline styles in the HTML, not style properties set from a script of our own origin).
  for (const bar of document.querySelectorAll(".bar[data-left][data-width]")) {
    const left = Math.max(0, Math.min(100, parseFloat(bar.dataset.left) || 0));
    const width = Math.max(0, Math.min(100 - left, parseFloat(bar.dataset.width) || 0));
    bar.style.left = left + "%";
    bar.style.width = width + "%";
  }
  // Each span's name indented by its depth in the trace.
  for (const name of document.querySelectorAll(".waterfall .name[data-depth]")) {
    const depth = Math.max(0, Math.min(30, parseInt(name.dataset.depth, 10) || 0));
    name.style.paddingLeft = (depth * 0.9) + "rem";
  }
  // Times shown in the reader's zone as well (the server renders UTC).
  for (const el of document.querySelectorAll("time[datetime]")) {
    const when = new Date(el.getAttribute("datetime"));
    if (!Number.isNaN(when.getTime())) el.title = when.toLocaleString();
  }
  // A form that asks before it changes something (data-confirm).
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
})();
