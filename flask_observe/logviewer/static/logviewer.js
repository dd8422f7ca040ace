/* flask_observe log viewer: plain JavaScript, no build step, no third-party code.
 *
 * The page is signed in by an HttpOnly cookie (see session.py): fetch() and EventSource
 * send it on their own, so this script never handles a token. Log content is only ever
 * put into the page as text (textContent), never as HTML.
 */
"use strict";

(function () {
  const body = document.body;
  const API = body.dataset.api;
  const TRACE_URL = body.dataset.traceUrl || "";
  const MAX_RESULTS = parseInt(body.dataset.maxResults, 10) || 1000;
  // "stream": an EventSource; "poll": this server cannot hold a stream (gunicorn sync
  // workers), so the tail asks for the lines since its last position every POLL_MS.
  const FOLLOW_MODE = body.dataset.followMode === "poll" ? "poll" : "stream";
  const POLL_MS = 2000;
  const MAX_TAIL_ROWS = 2000;
  const FILTERS = ["text", "regex", "level", "since", "until", "file", "correlation_id",
    "trace_id", "fields", "limit", "order", "ignore_case"];

  const $ = (selector, root) => (root || document).querySelector(selector);
  const searchForm = $("#search-form");
  const tailForm = $("#tail-form");
  const resultsBody = $("#results tbody");
  const tailBody = $("#tail tbody");
  const moreButton = $("#more-button");
  let nextCursor = null;
  let lastParams = null;
  let source = null;
  let pollTimer = null;
  let polling = 0;  // incremented on each start/stop: a stale poll's answer is dropped

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setStatus(node, text, isError) {
    node.textContent = text;
    node.classList.toggle("error", Boolean(isError));
  }

  function signedOut(response) {
    if (response.status === 401) {
      window.location.reload();  // the page answers with the sign-in form
      return true;
    }
    return false;
  }

  // -- rendering one line ---------------------------------------------------------------

  function levelOf(record) {
    const level = String(record.level || "").toLowerCase();
    return { warn: "warning", fatal: "critical" }[level] || level;
  }

  function traceLink(traceId) {
    if (!TRACE_URL || !/^[0-9a-fA-F]{16,32}$/.test(traceId)) return el("span", "mono", traceId);
    const link = el("a", "mono", traceId.slice(0, 12) + "…");
    link.href = TRACE_URL.replace("{trace_id}", encodeURIComponent(traceId));
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    link.title = "open the trace";
    return link;
  }

  function lineRow(item, table) {
    const row = el("tr", "line");
    const record = item.record;
    if (record) {
      const level = levelOf(record);
      // Any JSON line can say any level: only a safe class name (a space would throw).
      row.classList.add("lvl-" + (level.replace(/[^a-z0-9_-]/g, "_") || "none"));
      row.appendChild(el("td", "time mono", record.timestamp || ""));
      const levelCell = el("td", "level");
      levelCell.appendChild(el("span", "badge", level || "—"));
      row.appendChild(levelCell);
      row.appendChild(el("td", "service", record.service || ""));
      row.appendChild(el("td", "logger mono", record.logger || ""));
      row.appendChild(el("td", "message", record.message === undefined ? "" : record.message));
      const cidCell = el("td", "cid");
      if (record.correlation_id) {
        const button = el("button", "link mono", record.correlation_id);
        button.type = "button";
        button.title = "every line of this request";
        button.dataset.correlationId = record.correlation_id;
        cidCell.appendChild(button);
      }
      row.appendChild(cidCell);
      const traceCell = el("td", "trace");
      if (record.trace_id) traceCell.appendChild(traceLink(String(record.trace_id)));
      row.appendChild(traceCell);
    } else {
      row.classList.add("raw");
      row.appendChild(el("td", "time mono", ""));
      row.appendChild(el("td", "level", ""));
      const rawCell = el("td", "message mono", item.raw + (item.truncated ? " …(truncated)" : ""));
      rawCell.colSpan = 5;
      row.appendChild(rawCell);
    }
    row.title = item.file + " @ " + item.offset;
    row._item = item;
    table.appendChild(row);
    return row;
  }

  function toggleDetails(row) {
    const next = row.nextElementSibling;
    if (next && next.classList.contains("details")) {
      next.remove();
      row.classList.remove("open");
      return;
    }
    const details = el("tr", "details");
    const cell = el("td");
    cell.colSpan = 7;
    const item = row._item;
    const pre = el("pre", "json", item.record ? JSON.stringify(item.record, null, 2) : item.raw);
    cell.appendChild(el("div", "where", item.file + " at byte " + item.offset));
    cell.appendChild(pre);
    details.appendChild(cell);
    row.after(details);
    row.classList.add("open");
  }

  function onTableClick(event) {
    const button = event.target.closest("button[data-correlation-id]");
    if (button) {
      event.stopPropagation();
      showRequest(button.dataset.correlationId);
      return;
    }
    if (event.target.closest("a")) return;
    const row = event.target.closest("tr.line");
    if (row) toggleDetails(row);
  }

  // -- search ---------------------------------------------------------------------------

  function formParams(form) {
    const params = new URLSearchParams();
    const data = new FormData(form);
    for (const name of FILTERS) {
      const value = (data.get(name) || "").toString().trim();
      if (!value) continue;
      if (name === "fields") {
        for (const pair of value.split(/\s+/)) if (pair) params.append("field", pair);
      } else if (name === "ignore_case") {
        params.set("ignore_case", "true");
      } else if (name === "limit") {
        params.set("limit", String(Math.min(parseInt(value, 10) || 100, MAX_RESULTS)));
      } else {
        params.set(name, value);
      }
    }
    return params;
  }

  function fillForm(form, params) {
    for (const field of form.elements) {
      if (!field.name) continue;
      if (field.type === "checkbox") field.checked = params.get(field.name) === "true";
      else if (field.name === "fields") field.value = params.getAll("field").join(" ");
      else if (params.has(field.name)) field.value = params.get(field.name);
      else if (field.name === "limit") field.value = "100";
      else if (field.name === "order") field.value = "newest";
      else field.value = "";
    }
  }

  async function runSearch(params, append) {
    const status = $("#search-status");
    if (!append) {
      resultsBody.replaceChildren();
      nextCursor = null;
      lastParams = params;
      history.replaceState(null, "", "#" + params.toString());
    }
    const query = new URLSearchParams(lastParams);
    if (append && nextCursor) query.set("cursor", nextCursor);
    setStatus(status, "searching…");
    moreButton.hidden = true;
    let response;
    try {
      response = await fetch(API + "/search?" + query.toString(), { credentials: "same-origin" });
    } catch (error) {
      setStatus(status, "the server did not answer: " + error, true);
      return;
    }
    if (signedOut(response)) return;
    const data = await response.json().catch(() => ({ error: "unreadable answer" }));
    if (!response.ok) {
      setStatus(status, data.error || response.statusText, true);
      return;
    }
    let items = data.results;
    if (!append && lastParams.get("correlation_id")) {
      // One request's lines may come from several files: show them in time order.
      const sign = lastParams.get("order") === "oldest" ? 1 : -1;
      const stamp = (item) => (item.record && item.record.timestamp) || "";
      const compare = (a, b) => (stamp(a) < stamp(b) ? -1 : stamp(a) > stamp(b) ? 1 : 0);
      items = items.slice().sort((a, b) => sign * compare(a, b));
    }
    for (const item of items) lineRow(item, resultsBody);
    nextCursor = data.cursor;
    moreButton.hidden = !nextCursor;
    const shown = resultsBody.querySelectorAll("tr.line").length;
    let text = shown + (shown === 1 ? " line" : " lines") + " · scanned " +
      formatSize(data.stats.scanned_bytes) + " in " +
      Math.round(data.stats.elapsed_ms) + " ms";
    if (data.partial) text += " · stopped early (" + data.stopped.replace("_", " ") + "): load more to go on";
    if (data.errors.length) text += " · skipped: " + data.errors.map((e) => e.file + " (" + e.error + ")").join(", ");
    setStatus(status, text, false);
  }

  function showRequest(correlationId) {
    const params = new URLSearchParams();
    params.set("correlation_id", correlationId);
    params.set("order", "oldest");
    params.set("limit", String(Math.min(1000, MAX_RESULTS)));
    selectTab("search-panel");
    fillForm(searchForm, params);
    runSearch(params, false);
  }

  // -- files ----------------------------------------------------------------------------

  async function loadFiles() {
    const response = await fetch(API + "/files", { credentials: "same-origin" });
    if (signedOut(response) || !response.ok) return;
    const data = await response.json();
    const searchSelect = $("select[name=file]", searchForm);
    const tailSelect = $("select[name=file]", tailForm);
    const wanted = new URLSearchParams(location.hash.slice(1)).get("file");
    for (const file of data.files) {
      const label = file.name + (file.compressed ? " (gz)" : "") + " · " + formatSize(file.size);
      const option = el("option", null, label);
      option.value = file.name;
      searchSelect.appendChild(option);
      if (file.active) {
        const tailOption = el("option", null, file.name);
        tailOption.value = file.name;
        tailSelect.appendChild(tailOption);
      }
    }
    if (wanted) searchSelect.value = wanted;
  }

  function formatSize(bytes) {
    if (bytes < 1024) return bytes + " B";
    if (bytes < 1048576) return (bytes / 1024).toFixed(1) + " KiB";
    return (bytes / 1048576).toFixed(1) + " MiB";
  }

  // -- live tail ------------------------------------------------------------------------

  function rotationMarker(text) {
    const row = el("tr", "marker");
    const cell = el("td", null, text);
    cell.colSpan = 7;
    row.appendChild(cell);
    tailBody.appendChild(row);
  }

  function gapText(gap) {
    const what = gap.bytes === null || gap.bytes === undefined ? "some lines" : formatSize(gap.bytes);
    return "— " + what + (gap.file ? " of " + gap.file : "") + " missed: " + gap.reason + " —";
  }

  function tailLine(item) {
    const row = lineRow(item, tailBody);
    row.classList.add("fresh");
    while (tailBody.children.length > MAX_TAIL_ROWS) tailBody.firstElementChild.remove();
    row.scrollIntoView({ block: "nearest" });
  }

  function startTail(event) {
    event.preventDefault();
    stopTail();
    const data = new FormData(tailForm);
    const file = data.get("file");
    const status = $("#tail-status");
    if (!file) {
      setStatus(status, "no active log file to follow", true);
      return;
    }
    const params = new URLSearchParams();
    if (data.get("level")) params.set("level", data.get("level"));
    if (data.get("text")) params.set("text", data.get("text"));
    const lines = String(Math.max(0, Math.min(parseInt(data.get("lines"), 10) || 0, MAX_RESULTS)));
    tailBody.replaceChildren();
    $("#tail-start").disabled = true;
    $("#tail-stop").disabled = false;
    if (FOLLOW_MODE === "poll") {
      startPolling(file, params, lines);
      return;
    }
    params.set("follow", "true");
    params.set("lines", lines);
    source = new EventSource(API + "/tail/" + encodeURIComponent(file) + "?" + params.toString());
    setStatus(status, "connecting…");
    source.addEventListener("open", () => setStatus(status, "following " + file + " · live"));
    source.addEventListener("line", (message) => tailLine(JSON.parse(message.data)));
    source.addEventListener("rotated", () => {
      rotationMarker("— " + file + " was rotated; following the new file —");
    });
    source.addEventListener("gap", (message) => rotationMarker(gapText(JSON.parse(message.data))));
    source.addEventListener("error", () => {
      if (source && source.readyState === EventSource.CLOSED) {
        setStatus(status, "the stream was refused (signed out, or too many live tails)", true);
        stopTail();
      } else {
        setStatus(status, "reconnecting…");
      }
    });
  }

  // The polling tail: the last lines with the position after them ("next"), then every
  // POLL_MS the lines since that position (across rotations, like the stream).
  async function startPolling(file, params, lines) {
    const status = $("#tail-status");
    const run = ++polling;
    const url = API + "/tail/" + encodeURIComponent(file) + "?";
    const first = new URLSearchParams(params);
    first.set("lines", lines);
    setStatus(status, "connecting…");
    let next = null;
    try {
      const response = await fetch(url + first.toString(), { credentials: "same-origin" });
      if (run !== polling || signedOut(response)) return;
      const data = await response.json();
      if (!response.ok) {
        setStatus(status, data.error || response.statusText, true);
        stopTail();
        return;
      }
      for (const item of data.results) tailLine(item);
      next = data.next;
    } catch (error) {
      if (run === polling) setStatus(status, "the server did not answer: " + error, true);
      return;
    }
    setStatus(status, "following " + file + " · polling every " + POLL_MS / 1000 +
      " s (this server cannot hold a live stream)");
    const poll = async () => {
      if (run !== polling) return;
      const query = new URLSearchParams(params);
      query.set("after", next);
      let more = false;
      try {
        const response = await fetch(url + query.toString(), { credentials: "same-origin" });
        if (run !== polling || signedOut(response)) return;
        const data = await response.json();
        if (!response.ok) {
          setStatus(status, data.error || response.statusText, true);
          if (response.status !== 429) {
            stopTail();
            return;
          }
        } else {
          let shown = 0;
          for (const notice of data.notices) {
            while (shown < notice.at) tailLine(data.results[shown++]);
            if (notice.event === "gap") rotationMarker(gapText(notice));
            else if (notice.event === "rotated") rotationMarker("— " + file + " was rotated; following the new file —");
            else rotationMarker("— " + file + " was truncated; reading it again from its start —");
          }
          while (shown < data.results.length) tailLine(data.results[shown++]);
          next = data.next;
          more = data.more;
        }
      } catch (error) {
        setStatus(status, "the server did not answer; retrying…", true);
      }
      if (run === polling) pollTimer = setTimeout(poll, more ? 0 : POLL_MS);
    };
    pollTimer = setTimeout(poll, POLL_MS);
  }

  function stopTail() {
    if (source) source.close();
    source = null;
    polling++;
    if (pollTimer !== null) clearTimeout(pollTimer);
    pollTimer = null;
    $("#tail-start").disabled = false;
    $("#tail-stop").disabled = true;
  }

  // -- tabs and start-up ----------------------------------------------------------------

  function selectTab(panelId) {
    for (const tab of document.querySelectorAll("[role=tab]")) {
      const selected = tab.dataset.panel === panelId;
      tab.setAttribute("aria-selected", String(selected));
      $("#" + tab.dataset.panel).hidden = !selected;
    }
  }

  for (const tab of document.querySelectorAll("[role=tab]")) {
    tab.addEventListener("click", () => selectTab(tab.dataset.panel));
  }
  searchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    runSearch(formParams(searchForm), false);
  });
  $("#clear-button").addEventListener("click", () => {
    fillForm(searchForm, new URLSearchParams());
    resultsBody.replaceChildren();
    setStatus($("#search-status"), "");
    history.replaceState(null, "", location.pathname);
  });
  moreButton.addEventListener("click", () => runSearch(lastParams, true));
  $("#results").addEventListener("click", onTableClick);
  $("#tail").addEventListener("click", onTableClick);
  tailForm.addEventListener("submit", startTail);
  $("#tail-stop").addEventListener("click", () => {
    stopTail();
    setStatus($("#tail-status"), "stopped");
  });

  loadFiles().then(() => {
    const params = new URLSearchParams(location.hash.slice(1));
    if ([...params.keys()].length) {
      fillForm(searchForm, params);
      runSearch(params, false);
    } else {
      runSearch(formParams(searchForm), false);
    }
  });
})();
