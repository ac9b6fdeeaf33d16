"""The page's own CSS and JavaScript (inlined: the report is one offline file).

The script sorts tables (click or Enter on a header), filters the summary table by
the words typed in its box, and draws the figures from one JSON block with the Plotly
bundle embedded once in the page's head.
"""

CSS = """
:root { color-scheme: light; --fg: #1f2937; --muted: #6b7280; --line: #e5e7eb; --accent: #1f77b4; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: #f9fafb; }
header, main, nav { max-width: 1400px; margin: 0 auto; padding: 0 16px; }
header { padding-top: 20px; }
h1 { font-size: 1.5rem; margin: 0 0 8px; overflow-wrap: anywhere; }
h2 { font-size: 1.2rem; margin: 0 0 8px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 8px 0 12px; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
nav { position: sticky; top: 0; z-index: 10; background: #f9fafbee; padding-top: 6px; padding-bottom: 6px;
      border-bottom: 1px solid var(--line); }
nav a { margin-right: 14px; color: var(--accent); text-decoration: none; white-space: nowrap; display: inline-block; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px; margin: 14px 0; }
section > p.note { color: var(--muted); margin: 0 0 10px; max-width: 80ch; }
.figs { display: grid; gap: 12px; grid-template-columns: repeat(auto-fill, minmax(min(100%, 560px), 1fr)); }
.figs.wide { grid-template-columns: 1fr; }
.fig { width: 100%; min-width: 0; }
.table-wrap { overflow-x: auto; max-height: 75vh; overflow-y: auto; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
td { white-space: nowrap; }
td.wrap { white-space: normal; min-width: 12em; max-width: 40em; overflow-wrap: anywhere; }
th { position: sticky; top: 0; background: #f3f4f6; white-space: nowrap; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: " \\2195"; color: #9ca3af; }
table.sortable th[aria-sort="ascending"]::after { content: " \\2191"; color: var(--fg); }
table.sortable th[aria-sort="descending"]::after { content: " \\2193"; color: var(--fg); }
th.num, td.num { text-align: right; }
td.status-ok { color: #047857; } td.status-failed { color: #b91c1c; font-weight: 600; }
td.status-skipped { color: #92400e; }
.filter { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin-bottom: 8px; }
.filter input { font: inherit; padding: 5px 8px; border: 1px solid #d1d5db; border-radius: 6px; min-width: 0;
                width: min(100%, 360px); }
.filter output { color: var(--muted); }
details { margin: 6px 0; } summary { cursor: pointer; overflow-wrap: anywhere; }
details table { margin-top: 6px; }
td.key { color: var(--muted); white-space: nowrap; }
@media (max-width: 640px) {
  body { font-size: 14px; } header, main, nav { padding: 0 8px; } section { padding: 10px 8px; }
  dl.meta { grid-template-columns: 1fr; } dl.meta dt { margin-top: 4px; }
}
"""

JS = """
(function () {
  "use strict";
  function cellValue(td) { var v = td.getAttribute("data-v"); return v === null ? td.textContent.trim() : v; }
  function sortBy(table, index, th) {
    var heads = table.tHead.rows[0].cells;
    var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    for (var h = 0; h < heads.length; h++) { heads[h].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", dir);
    var numeric = th.classList.contains("num"), sign = dir === "ascending" ? 1 : -1;
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a.cells[index]), y = cellValue(b.cells[index]);
      if (numeric) {
        x = x === "" ? NaN : Number(x); y = y === "" ? NaN : Number(y);
        if (isNaN(x) || isNaN(y)) { return isNaN(x) === isNaN(y) ? 0 : (isNaN(x) ? 1 : -1); }
        return sign * (x - y);
      }
      return sign * x.localeCompare(y, undefined, {numeric: true});
    });
    var frag = document.createDocumentFragment();
    rows.forEach(function (row) { frag.appendChild(row); });
    body.appendChild(frag);
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.tabIndex = 0;
      th.setAttribute("role", "columnheader");
      th.addEventListener("click", function () { sortBy(table, index, th); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, index, th); }
      });
    });
  });
  document.querySelectorAll("input[data-filter]").forEach(function (input) {
    var table = document.getElementById(input.getAttribute("data-filter"));
    var out = document.getElementById(input.getAttribute("data-count"));
    var rows = table.tBodies[0].rows;
    input.addEventListener("input", function () {
      var terms = input.value.toLowerCase().split(/\\s+/).filter(Boolean), shown = 0;
      Array.prototype.forEach.call(rows, function (row) {
        var text = row.textContent.toLowerCase();
        var keep = terms.every(function (t) { return text.indexOf(t) !== -1; });
        row.hidden = !keep;
        if (keep) { shown++; }
      });
      out.textContent = shown + " of " + rows.length + " cases";
    });
  });
  var data = document.getElementById("bb-figures");
  if (data && window.Plotly) {
    // offline: no "share to cloud" button (it would post the data to a server)
    var config = {responsive: true, displaylogo: false, showSendToCloud: false, showLink: false,
                  modeBarButtonsToRemove: ["sendChartToCloud", "sendDataToCloud", "lasso2d", "select2d"],
                  toImageButtonOptions: {format: "png", scale: 2}};
    JSON.parse(data.textContent).forEach(function (f) {
      Plotly.newPlot(f.id, f.fig.data, f.fig.layout, config);
    });
  }
})();
"""
