// Live preview of a reply template while it is edited: the draft is POSTed (JSON, CSRF
// token in X-CSRF-Token) and rendered by the server against the last real reply's data.
// Without JavaScript the 「预览」 button does the same through the form.
(function () {
  "use strict";
  var form = document.getElementById("editor");
  var source = document.getElementById("source");
  var out = document.getElementById("preview");
  if (!form || !source || !out) return;
  var timer = null;
  var seq = 0;

  function show(text, failed) {
    out.textContent = text;  // text, never markup
    out.classList.toggle("failed", !!failed);
  }

  function preview() {
    var mine = ++seq;
    fetch(form.dataset.preview, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": form.dataset.csrf },
      body: JSON.stringify({ source: source.value })
    }).then(function (resp) {
      if (!resp.ok) return resp.text().then(function (t) { throw new Error(t); });
      return resp.json();
    }).then(function (answer) {
      if (mine !== seq) return;  // a newer draft was sent meanwhile
      if (!answer.ok) show(answer.error, true);
      else if (!answer.known) show("（语法检查通过；还没有真实数据可以预览）", false);
      else show(answer.text, false);
    }).catch(function (err) {
      if (mine === seq) show("预览失败：" + err.message, true);
    });
  }

  source.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(preview, 400);
  });
})();
