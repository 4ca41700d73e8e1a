// upbench report.html: sortable tables, the metric and reference selectors of the interval plots.
// Hand-written, no dependencies; the page is readable without it.
(function () {
  "use strict";

  function cellValue(row, index) {
    var cell = row.cells[index];
    if (!cell) return null;
    var v = cell.getAttribute("data-v");
    if (v === null || v === "") return null;
    var n = Number(v);
    return isNaN(n) ? v.toLowerCase() : n;
  }

  function sortTable(table, index, th) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var current = th.getAttribute("aria-sort");
    // numbers start descending (best accuracy first), text ascending
    var numeric = rows.some(function (r) { return typeof cellValue(r, index) === "number"; });
    var descending = current ? current === "ascending" : numeric;
    rows.sort(function (a, b) {
      var x = cellValue(a, index), y = cellValue(b, index);
      if (x === null && y === null) return 0;
      if (x === null) return 1;  // missing values last
      if (y === null) return -1;
      if (x < y) return descending ? 1 : -1;
      if (x > y) return descending ? -1 : 1;
      return 0;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }

  function updateForest(section) {
    var metric = section.querySelector("select.metric");
    var ref = section.querySelector("select.ref");
    if (!metric) return;
    var m = metric.value, r = ref ? ref.value : "bilinear";
    section.querySelectorAll("[data-fm]").forEach(function (el) {
      var show = el.getAttribute("data-fm") === m && el.getAttribute("data-fr") === r;
      el.classList.toggle("hidden", !show);
    });
    section.querySelectorAll("td.forest").forEach(function (td) {
      var v = td.getAttribute("data-v-" + m + "-" + r);
      td.setAttribute("data-v", v === null ? "" : v);
    });
    section.querySelectorAll("[data-metric]").forEach(function (el) {
      el.classList.toggle("selected", el.getAttribute("data-metric") === m);
    });
    var head = section.querySelector("th.forest-head");
    if (head) head.textContent = "\u0394 " + m + " vs " + r;
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.addEventListener("click", function () { sortTable(table, index, th); });
      th.title = "click to sort";
    });
  });
  document.querySelectorAll("section.setting").forEach(function (section) {
    section.querySelectorAll("select").forEach(function (s) {
      s.addEventListener("change", function () { updateForest(section); });
    });
    updateForest(section);
  });
  document.documentElement.setAttribute("data-ready", "1");
})();
