// Renders every <script type="application/json" data-plot="ID"> figure into the element ID,
// and the training curves fetched from data-training-url (a chart with several trainers'
// columns spans the row). Sets data-rendered when done.
// Submits the form of a <select data-autosubmit> (confusion matrix variant, PR-curve class,
// misclassified-images variant) when another option is picked.
(function () {
  "use strict";
  const config = { responsive: true, displaylogo: false };

  function draw(target, figure) {
    return Plotly.newPlot(target, figure.data, figure.layout, config).then(function () {
      target.setAttribute("data-rendered", "1");
    });
  }

  function drawEmbedded() {
    document.querySelectorAll('script[type="application/json"][data-plot]').forEach(function (s) {
      const target = document.getElementById(s.getAttribute("data-plot"));
      if (target) { draw(target, JSON.parse(s.textContent)); }
    });
  }

  function drawTraining() {
    const holder = document.querySelector("[data-training-url]");
    if (!holder) { return; }
    fetch(holder.getAttribute("data-training-url"))
      .then(function (r) { return r.json(); })
      .then(function (data) {
        holder.textContent = "";
        if (!data.charts.length) {
          holder.textContent = "No scalars in the TensorBoard logs of this run.";
        }
        // All chart boxes first, so each plot is drawn at its final width.
        const boxes = data.charts.map(function (chart, i) {
          const div = document.createElement("div");
          div.className = "chart";
          div.id = "training-" + i;
          div.setAttribute("data-title", chart.title);
          if ((chart.components || []).length > 1) { div.classList.add("wide"); }
          holder.appendChild(div);
          return div;
        });
        data.charts.forEach(function (chart, i) { draw(boxes[i], chart.figure); });
        holder.setAttribute("data-loaded", String(data.series));
      })
      .catch(function (err) {
        holder.textContent = "Could not read the training logs: " + err;
        holder.setAttribute("data-loaded", "error");
      });
  }

  // Pickers reload the page with the option picked.
  function autoSubmit() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawEmbedded();
    drawTraining();
    autoSubmit();
  });
})();
