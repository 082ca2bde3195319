// The dashboard's tables, sorted and filtered in place. The server does the same from the
// query string (?sort=…&dir=…&q=…&status=…) with the same keys: every row carries its sort
// values as data-s-<key> ("" = none, always last), so both orders agree. No dependencies.
(function () {
  "use strict";

  var tables = Array.prototype.slice.call(document.querySelectorAll("table.sortable"));
  if (!tables.length) {
    return;
  }
  var form = document.getElementById("dash-filter");
  var query = form ? form.elements.namedItem("q") : null;
  var status = form ? form.elements.namedItem("status") : null;
  var lagging = form ? form.getAttribute("data-lagging") : "";
  // rows the server filtered out are not on the page: widening the filter needs the server
  var serverFiltered = form ? form.getAttribute("data-filtered") === "1" : false;

  function rowsOf(table) {
    return Array.prototype.slice.call(table.tBodies[0].rows);
  }

  tables.forEach(function (table) {
    rowsOf(table).forEach(function (row, i) {
      row.setAttribute("data-i", String(i));
    });
  });

  function remember(params) {
    if (!window.history || !window.URL) {
      return;
    }
    var url = new URL(window.location.href);
    Object.keys(params).forEach(function (key) {
      if (params[key]) {
        url.searchParams.set(key, params[key]);
      } else {
        url.searchParams.delete(key);
      }
    });
    window.history.replaceState(null, "", url.toString());
  }

  function index(row) {
    return Number(row.getAttribute("data-i"));
  }

  function compare(a, b, numeric) {
    if (numeric) {
      return Number(a) - Number(b);
    }
    return a < b ? -1 : a > b ? 1 : 0;
  }

  function sortTable(table, key, numeric, descending) {
    var body = table.tBodies[0];
    var rows = rowsOf(table);
    rows.sort(function (x, y) {
      var a = x.getAttribute("data-s-" + key) || "";
      var b = y.getAttribute("data-s-" + key) || "";
      if (a === "" || b === "") {
        if (a === b) {
          return index(x) - index(y);
        }
        return a === "" ? 1 : -1;
      }
      var order = compare(a, b, numeric);
      return (descending ? -order : order) || index(x) - index(y);
    });
    rows.forEach(function (row) {
      body.appendChild(row);
    });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) {
      var on = cell.getAttribute("data-key") === key;
      cell.setAttribute("aria-sort", on ? (descending ? "descending" : "ascending") : "none");
      var arrow = cell.querySelector(".arrow");
      if (arrow) {
        arrow.textContent = on ? (descending ? " ▼" : " ▲") : "";
      }
    });
  }

  tables.forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) {
      var link = cell.querySelector("a");
      if (!link) {
        return;
      }
      link.addEventListener("click", function (event) {
        event.preventDefault();
        var key = cell.getAttribute("data-key");
        var descending = cell.getAttribute("aria-sort") === "ascending";
        var numeric = cell.getAttribute("data-type") === "num";
        tables.forEach(function (each) {
          sortTable(each, key, numeric, descending);
        });
        remember({ sort: key, dir: descending ? "desc" : "asc" });
      });
    });
  });

  function keep(row, text, wanted) {
    var unit = (row.getAttribute("data-unit") || "").toLowerCase();
    if (text && unit.indexOf(text) === -1) {
      return false;
    }
    if (!wanted) {
      return true;
    }
    if (wanted === lagging) {
      return row.getAttribute("data-behind") === "1";
    }
    return row.getAttribute("data-status") === wanted;
  }

  function applyFilter() {
    var text = query ? query.value.trim().toLowerCase() : "";
    var wanted = status ? status.value : "";
    tables.forEach(function (table) {
      var shown = 0;
      rowsOf(table).forEach(function (row) {
        var ok = keep(row, text, wanted);
        row.hidden = !ok;
        if (ok) {
          shown += 1;
        }
      });
      var counter = document.querySelector('[data-count-for="' + table.id + '"]');
      if (counter) {
        counter.textContent = "显示 " + shown + " / " + table.getAttribute("data-total") + " 行";
      }
      var none = document.querySelector('[data-none-for="' + table.id + '"]');
      if (none) {
        none.hidden = shown > 0;
      }
    });
    remember({ q: query ? query.value.trim() : "", status: wanted });
  }

  if (form && !serverFiltered) {
    if (query) {
      query.addEventListener("input", applyFilter);
    }
    if (status) {
      status.addEventListener("change", applyFilter);
    }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      applyFilter();
    });
  } else if (form && status) {
    status.addEventListener("change", function () {
      form.submit();
    });
  }
})();
