/* Broadcasts: the compose form's live audience count and message preview, and the
   progress page's polling. Text only ever goes in through textContent: unit names and
   field values are data, never markup. Without this script the pages still work. */
(function () {
  "use strict";

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function debounce(fn, ms) {
    var timer = null;
    return function () {
      clearTimeout(timer);
      timer = setTimeout(fn, ms);
    };
  }

  // a JSON answer, or {error} when the server answered something else (e.g. the login page)
  function answer(resp) {
    var type = resp.headers.get("Content-Type") || "";
    if (type.indexOf("application/json") === -1) {
      return { error: resp.status === 403 ? "安全令牌无效或登录已过期：请刷新页面。"
                                           : "无法获取（登录可能已过期）：请刷新页面。" };
    }
    return resp.json();
  }

  // ---- compose ------------------------------------------------------------------------
  function setupCompose(form) {
    var csrf = form.elements._csrf.value;
    var countBox = document.getElementById("live-count");
    var sampleBox = document.getElementById("live-sample");
    var previewBox = document.getElementById("live-preview");
    var audienceSeq = 0;
    var previewSeq = 0;

    function kind() {
      var checked = form.querySelector('input[name="audience"]:checked');
      return checked ? checked.value : "liaisons";
    }

    function showFilters() {
      var filters = form.querySelectorAll("fieldset[data-kind]");
      for (var i = 0; i < filters.length; i++) {
        var on = filters[i].getAttribute("data-kind") === kind();
        filters[i].hidden = !on;
        filters[i].disabled = !on; // a disabled fieldset's fields are not sent
      }
    }

    function fields() {
      var params = new URLSearchParams();
      new FormData(form).forEach(function (value, name) {
        if (name !== "_csrf" && typeof value === "string") params.append(name, value);
      });
      return params;
    }

    function audienceParams() {
      var all = fields();
      var params = new URLSearchParams();
      all.forEach(function (value, name) {
        if (name === "audience" || name.slice(0, 2) === "l_" || name.slice(0, 2) === "d_") {
          params.append(name, value);
        }
      });
      return params;
    }

    function refreshCount() {
      var seq = ++audienceSeq;
      countBox.textContent = "正在统计…";
      countBox.className = "bc-live muted";
      fetch(form.dataset.audienceUrl + "?" + audienceParams().toString(), {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      })
        .then(answer)
        .then(function (data) {
          if (seq !== audienceSeq) return;
          clear(sampleBox);
          if (data.error) {
            countBox.textContent = data.error;
            countBox.className = "bc-live error";
            return;
          }
          countBox.className = "bc-live";
          countBox.textContent = data.audience + "：" + data.count + " 人";
          data.sample.forEach(function (r) {
            var item = el("li", (r.unit || r.role) + " ");
            var keys = Object.keys(r.params);
            item.appendChild(el("span", "可用：" + keys.join("、"), "muted"));
            sampleBox.appendChild(item);
          });
          if (data.count > data.sample.length) {
            sampleBox.appendChild(el("li", "……等 " + data.count + " 人", "muted"));
          }
        })
        .catch(function () {
          if (seq === audienceSeq) countBox.textContent = "网络错误，稍后再试。";
        });
    }

    function refreshPreview() {
      var body = fields();
      if (!body.get("fields")) return;
      var seq = ++previewSeq;
      fetch(form.dataset.previewUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
        body: body,
      })
        .then(answer)
        .then(function (data) {
          if (seq !== previewSeq) return;
          clear(previewBox);
          if (data.error) {
            previewBox.appendChild(el("p", data.error, "error"));
            return;
          }
          var r = data.recipient;
          previewBox.appendChild(
            el("p", "第一位收件人：" + (r.unit || r.role) + "（共 " + data.count + " 人）", "muted")
          );
          if (data.channel === "custom") {
            previewBox.appendChild(el("div", data.shown.content, "bc-bubble"));
          } else {
            var table = el("table", null, "grid");
            Object.keys(data.shown).forEach(function (k) {
              var row = el("tr");
              row.appendChild(el("th", k));
              row.appendChild(el("td", data.shown[k], "bc-text"));
              table.appendChild(row);
            });
            previewBox.appendChild(table);
          }
          if (data.hidden.length) {
            previewBox.appendChild(
              el("p", "微信不显示：" + data.hidden.join("、") + "（收件人看不到）", "muted")
            );
          }
        })
        .catch(function () {
          if (seq === previewSeq) {
            clear(previewBox);
            previewBox.appendChild(el("p", "网络错误，稍后再试。", "error"));
          }
        });
    }

    var countSoon = debounce(refreshCount, 300);
    var previewSoon = debounce(refreshPreview, 400);
    form.addEventListener("input", function (event) {
      var name = event.target.name || "";
      if (name === "audience" || name.slice(0, 2) === "l_" || name.slice(0, 2) === "d_") {
        showFilters();
        countSoon();
      }
      previewSoon();
    });
    form.addEventListener("change", function (event) {
      if (event.target.name === "audience") {
        showFilters();
        countSoon();
        previewSoon();
      }
    });
    showFilters();
    refreshCount();
    refreshPreview();
  }

  // ---- progress -----------------------------------------------------------------------
  function setupProgress(box) {
    var url = box.dataset.progressUrl;
    var every = parseInt(box.dataset.pollMs, 10) || 1000;

    function update(data) {
      if (data.error) {
        document.getElementById("state").textContent = data.error;
        return true; // stop polling: a reload is needed (e.g. the login expired)
      }
      var total = data.total || 1;
      ["sent", "failed", "skipped"].forEach(function (k) {
        var seg = box.querySelector('[data-seg="' + k + '"]');
        if (seg) seg.style.width = (100 * data.counts[k]) / total + "%";
      });
      var nodes = box.querySelectorAll("[data-count]");
      for (var i = 0; i < nodes.length; i++) {
        var k = nodes[i].getAttribute("data-count");
        nodes[i].textContent = k === "total" ? data.total : data.counts[k];
      }
      var bar = box.querySelector('[role="progressbar"]');
      if (bar) bar.setAttribute("aria-valuenow", data.finished);
      document.getElementById("percent").textContent = data.percent;
      document.getElementById("state").textContent = data.state;
      var tbody = box.querySelector("#errors tbody");
      clear(tbody);
      if (!data.errors.length) {
        var none = el("tr", null, "none");
        var cell = el("td", "没有失败。", "muted");
        cell.colSpan = 2;
        none.appendChild(cell);
        tbody.appendChild(none);
      }
      data.errors.forEach(function (e) {
        var row = el("tr");
        row.appendChild(el("td", e.reason));
        row.appendChild(el("td", e.count, "num"));
        tbody.appendChild(row);
      });
      var cancelled = data.status === "cancelled";
      document.getElementById("cancel-form").hidden = cancelled || data.done;
      document.getElementById("retry-form").hidden = cancelled || !data.counts.failed;
      return data.done;
    }

    function tick() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(answer)
        .then(function (data) {
          if (!update(data)) setTimeout(tick, every);
        })
        .catch(function () {
          setTimeout(tick, every * 3);
        });
    }

    if (box.dataset.done !== "1") setTimeout(tick, every);
  }

  var compose = document.getElementById("compose");
  if (compose) setupCompose(compose);
  var progress = document.getElementById("progress");
  if (progress) setupProgress(progress);
})();
