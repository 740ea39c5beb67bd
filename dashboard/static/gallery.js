// Detection gallery: draws the ground truth and every variant's boxes (from the JSON in
// #gallery-data) as SVG over each thumbnail. The SVG's viewBox is the original image's
// size, so boxes in original pixels scale with the thumbnail. Names are set as text only.
// The variant checkboxes and the score slider hide boxes without a reload; links marked
// data-keep-settings carry the slider and the hidden variants to the next page.
// The [data-gallery] holder gets data-drawn (boxes drawn) and data-visible (detections shown).
(function () {
  "use strict";
  const SVG = "http://www.w3.org/2000/svg";

  function node(name, attrs, parent) {
    const el = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (key) { el.setAttribute(key, attrs[key]); });
    parent.appendChild(el);
    return el;
  }

  // One box: a rect with data-variant (and data-score), its label above it, a hover title.
  function drawBox(svg, box, variant, colour, label, scale, score) {
    const g = node("g", { "class": score === null ? "box gt" : "box", "data-variant": variant }, svg);
    const rect = node("rect", {
      x: box[0], y: box[1], width: box[2], height: box[3], stroke: colour, "data-variant": variant,
    }, g);
    if (score !== null) {
      g.setAttribute("data-score", score);
      rect.setAttribute("data-score", score);
    }
    // Detection labels above the box (inside at the image's top), ground truth inside its bottom.
    const y = score === null ? box[1] + box[3] - 3 * scale
      : box[1] >= 14 * scale ? box[1] - 3 * scale : box[1] + 12 * scale;
    const text = node("text", {
      x: box[0] + 2 * scale, y: y,
      fill: colour, "font-size": 11 * scale, "stroke-width": 3 * scale,
    }, g);
    text.textContent = label;
    node("title", {}, g).textContent = (score === null ? "ground truth" : variant) + ": " + label;
  }

  function drawImage(svg, data) {
    const image = data.images[svg.getAttribute("data-image")];
    if (!image) { return 0; }
    const only = svg.getAttribute("data-only");
    const scale = image.w / (svg.getBoundingClientRect().width || 300);
    const name = function (id) { return data.categories[String(id)] || "class " + id; };
    let drawn = 0;
    image.gt.forEach(function (b) {
      drawBox(svg, b, data.groundTruth.name, data.groundTruth.colour, name(b[4]), scale, null);
    });
    data.variants.forEach(function (v) {
      if (only !== null && only !== v.name) { return; }
      (image.boxes[v.name] || []).forEach(function (b) {
        drawBox(svg, b, v.name, v.colour, name(b[5]) + " " + b[4].toFixed(2), scale, b[4]);
        drawn += 1;
      });
    });
    return drawn;
  }

  function filter(holder) {
    const slider = document.getElementById("score-threshold");
    const threshold = parseFloat(slider.value);
    const on = {};
    const hidden = [];
    document.querySelectorAll("input.variant-toggle").forEach(function (box) {
      on[box.value] = box.checked;
      if (!box.checked) { hidden.push(box.value); }
    });
    let visible = 0;
    holder.querySelectorAll("svg.overlay g.box").forEach(function (g) {
      const score = g.getAttribute("data-score");
      const show = on[g.getAttribute("data-variant")] !== false &&
        (score === null || parseFloat(score) >= threshold);
      g.style.display = show ? "" : "none";
      if (show && score !== null) { visible += 1; }
    });
    document.getElementById("score-value").textContent = threshold.toFixed(2);
    document.getElementById("visible-boxes").textContent = String(visible);
    holder.setAttribute("data-visible", String(visible));
    document.querySelectorAll("a[data-keep-settings]").forEach(function (a) {
      const url = new URL(a.href);
      url.searchParams.set("threshold", threshold.toFixed(2));
      url.searchParams.delete("hide");
      hidden.forEach(function (v) { url.searchParams.append("hide", v); });
      a.href = url.toString();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const holder = document.querySelector("[data-gallery]");
    const source = document.getElementById("gallery-data");
    if (!holder || !source) { return; }
    const data = JSON.parse(source.textContent);
    let drawn = 0;
    holder.querySelectorAll("svg.overlay[data-image]").forEach(function (svg) {
      drawn += drawImage(svg, data);
    });
    const update = function () { filter(holder); };
    document.getElementById("score-threshold").addEventListener("input", update);
    document.querySelectorAll("input.variant-toggle").forEach(function (box) {
      box.addEventListener("change", update);
    });
    update();
    holder.setAttribute("data-drawn", String(drawn));
  });
})();
