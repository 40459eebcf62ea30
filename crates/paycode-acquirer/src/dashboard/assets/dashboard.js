// paycode dashboard: small progressive enhancements. Every page works without it except the
// charts, which need uPlot (embedded, never from a CDN).
(function () {
  "use strict";

  // The time-zone picker sends itself, and brings the viewer back to this page.
  document.querySelectorAll("[data-back]").forEach(function (el) {
    el.value = location.pathname + location.search;
  });
  document.querySelectorAll("select[data-autosubmit]").forEach(function (el) {
    el.addEventListener("change", function () { el.form.submit(); });
  });
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      if (!window.confirm(form.getAttribute("data-confirm"))) e.preventDefault();
    });
  });

  var dataEl = document.getElementById("overview-data");
  if (!dataEl || typeof uPlot === "undefined") return;

  var charts = [];
  var currency = null;

  function width(el) { return Math.max(300, el.clientWidth - 8); }

  // Axis values as people read them: 950, 12k, 3.4M.
  function compact(u, values) {
    return values.map(function (v) {
      var a = Math.abs(v);
      if (a >= 1e9) return +(v / 1e9).toFixed(1) + "G";
      if (a >= 1e6) return +(v / 1e6).toFixed(1) + "M";
      if (a >= 1e4) return +(v / 1e3).toFixed(1) + "k";
      return String(v);
    });
  }

  function draw(data) {
    charts.forEach(function (c) { c.destroy(); });
    charts = [];
    var s = data.series;
    var currencies = Object.keys(s.volume);
    var pick = document.getElementById("volume-currency");
    if (currency === null || currencies.indexOf(currency) < 0) currency = currencies[0] || null;
    pick.innerHTML = "";
    currencies.forEach(function (c) {
      var o = document.createElement("option");
      o.textContent = c; o.selected = c === currency; pick.appendChild(o);
    });
    var defs = [
      ["chart-count", [s.count, s.paid], [{ label: "payments", stroke: "#0b5fff" }, { label: "paid", stroke: "#116b2f" }]],
      ["chart-rate", [s.rate], [{ label: "success %", stroke: "#8a5a00", spanGaps: true, points: { show: true } }], { y: { range: [0, 100] } }],
      ["chart-volume", [currency ? s.volume[currency] : s.t.map(function () { return 0; })],
        [{ label: currency || "volume", stroke: "#14213d", fill: "rgba(11,95,255,0.12)" }]],
    ];
    defs.forEach(function (d) {
      var el = document.getElementById(d[0]);
      el.innerHTML = "";
      charts.push(new uPlot({
        width: width(el), height: 220,
        // Time axes in the viewer's chosen zone, like every time on the pages.
        tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), data.zone); },
        series: [{}].concat(d[2]),
        scales: d[3] || {},
        axes: [{}, { size: 56, values: compact }],
      }, [s.t].concat(d[1]), el));
    });
  }

  function figures(data) {
    var set = function (id, text) { var el = document.getElementById(id); if (el) el.textContent = text; };
    var rate = function (r) { return r === null ? "–" : r + "%"; };
    set("today-count", data.today.count); set("week-count", data.week.count);
    set("today-rate", rate(data.today.rate)); set("week-rate", rate(data.week.rate));
    set("generated", data.generated);
    [["today-volume", data.today.volume], ["week-volume", data.week.volume]].forEach(function (p) {
      var ul = document.getElementById(p[0]);
      if (!ul) return;
      ul.innerHTML = "";
      (p[1].length ? p[1] : ["no paid volume"]).forEach(function (v) {
        var li = document.createElement("li"); li.textContent = v; ul.appendChild(li);
      });
    });
  }

  var last = JSON.parse(dataEl.textContent);
  draw(last);
  document.getElementById("volume-currency").addEventListener("change", function (e) {
    currency = e.target.value; draw(last);
  });
  window.addEventListener("resize", function () { draw(last); });
  setInterval(function () {
    fetch("/dashboard/overview.json", { credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 401) { location.href = "/dashboard/sign-in?why=expired"; throw new Error("signed out"); }
        return r.json();
      })
      .then(function (d) { last = d; figures(d); draw(d); })
      .catch(function () {});
  }, 15000);
})();
