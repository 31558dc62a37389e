/* clutch: the little the pages need beyond htmx. */
(function () {
  "use strict";

  function liveRoot(elt) {
    return elt && elt.closest ? elt.closest("[data-live]") || elt : elt;
  }

  function setLive(elt, state, label) {
    var root = liveRoot(elt);
    if (!root) return;
    root.dataset.liveState = state;
    var text = root.querySelector(".live-label");
    if (text) text.textContent = label;
  }

  // A live page says which event it rendered last, so a (re)connect replays only the rest.
  document.addEventListener("htmx:wsOpen", function (evt) {
    var root = liveRoot(evt.detail.elt);
    var cursor = root.querySelector("[id^='trip-cursor-']");
    var after = cursor ? Number(cursor.dataset.after || 0) : 0;
    evt.detail.socketWrapper.send(JSON.stringify({ after: after }));
    setLive(root, "live", "live");
  });

  document.addEventListener("htmx:wsClose", function (evt) {
    var code = evt.detail.event && evt.detail.event.code;
    if (code >= 4000 && code < 5000) {
      setLive(evt.detail.elt, "closed", code === 4403 ? "not yours" : "not available");
    } else {
      setLive(evt.detail.elt, "reconnecting", "reconnecting…");
    }
  });

  // The first chunk of a leg the page has no box for yet opens one.
  document.addEventListener("htmx:oobErrorNoTarget", function (evt) {
    var content = evt.detail.content;
    var parentId = content && content.dataset && content.dataset.streamParent;
    var parent = parentId && document.getElementById(parentId);
    if (parent) parent.appendChild(content);
  });

  // --- charts (Chart.js, only on pages that load it) ---------------------------------------
  var PALETTE = ["#2563eb", "#15803d", "#ca8a04", "#ea580c", "#b91c1c", "#7c3aed", "#0891b2",
    "#db2777", "#4d7c0f", "#64748b", "#9333ea", "#0f766e"];

  function readData(canvas) {
    var source = document.getElementById(canvas.dataset.source);
    return source ? JSON.parse(source.textContent) : null;
  }

  var builders = {
    fitness: function (data) {
      return {
        type: "bar",
        data: {
          labels: data.roads,
          datasets: data.gears.map(function (gear, i) {
            return {
              label: gear,
              data: data.fitness.map(function (row) { return row[i]; }),
              backgroundColor: PALETTE[i % PALETTE.length],
              borderRadius: 3,
              skipNull: true,
              maxBarThickness: 22,
            };
          }),
        },
        options: {
          indexAxis: "y",
          maintainAspectRatio: false,
          scales: { x: { min: 0, max: 1, title: { display: true, text: "fitness" } } },
          plugins: { legend: { position: "bottom" } },
        },
      };
    },
    epsilon: function (data) {
      return {
        type: "line",
        data: {
          labels: data.labels,
          datasets: [
            { label: "ε after the run", data: data.values, borderColor: "#2563eb",
              backgroundColor: "rgba(37, 99, 235, .15)", fill: true, tension: 0.2, pointRadius: 2 },
            { label: "floor", data: data.labels.map(function () { return data.floor; }),
              borderColor: "#b91c1c", borderDash: [6, 4], pointRadius: 0 },
          ],
        },
        options: {
          maintainAspectRatio: false,
          scales: { y: { min: 0, suggestedMax: data.start } },
          plugins: { legend: { position: "bottom" } },
        },
      };
    },
  };

  function drawCharts(root) {
    if (typeof window.Chart === "undefined") return;
    (root || document).querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (canvas.dataset.drawn) return;
      var build = builders[canvas.dataset.chart];
      var data = readData(canvas);
      if (!build || !data) return;
      canvas.dataset.drawn = "1";
      new window.Chart(canvas, build(data));
    });
  }

  window.addEventListener("load", function () { drawCharts(document); });
  document.addEventListener("htmx:afterSettle", function () { drawCharts(document); });
})();
