// wsprof report: interactive flamegraphs drawn from the call trees embedded in the page.
// Own vanilla JS, no library: the page must open from disk with no network, the data are
// small pruned trees, and ~150 lines of DOM code is less to audit than a vendored bundle.
// Frame names come from recordings: they are only ever set through textContent.
(function () {
  "use strict";
  var ROW = 17;

  function flatten(data) {
    var out = [], diff = data.kind === "diff";
    function walk(node, x, depth, parent) {
      var a = node[1], b = diff ? node[2] : node[1];
      var w = diff ? (a + b) / 2 : a;
      var item = { name: data.names[node[0]], a: a, b: b, w: w, x: x, d: depth, parent: parent,
                   layer: diff ? null : data.layers[node[2]] };
      out.push(item);
      var cx = x;
      node[3].forEach(function (child) { cx += walk(child, cx, depth + 1, item).w; });
      return item;
    }
    walk(data.root, 0, 0, null);
    return out;
  }

  function diffColour(delta, maxAbs) {
    var t = maxAbs ? Math.min(Math.abs(delta) / maxAbs, 1) : 0, f = Math.round(235 - 175 * t);
    if (delta > 0) return "rgb(255," + f + "," + f + ")";
    if (delta < 0) return "rgb(" + f + "," + f + ",255)";
    return "rgb(235,235,235)";
  }

  function fmt(v) { return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(1) : v.toFixed(3); }

  function Flame(box, data, colours) {
    var nodes = flatten(data), root = nodes[0], diff = data.kind === "diff";
    var maxDepth = nodes.reduce(function (m, n) { return Math.max(m, n.d); }, 0);
    var maxAbs = nodes.reduce(function (m, n) { return Math.max(m, Math.abs(n.b - n.a)); }, 0);
    var graph = box.querySelector(".fg-graph"), details = box.querySelector(".fg-details");
    var search = box.querySelector(".fg-search"), reset = box.querySelector(".fg-reset");
    var matched = box.querySelector(".fg-matched"), focus = root, term = "";
    var frag = document.createDocumentFragment();  // one insertion: one layout, not one per frame
    graph.style.height = (maxDepth + 1) * ROW + "px";
    nodes.forEach(function (n) {
      var el = document.createElement("div");
      el.className = "fg-frame";
      el.style.bottom = n.d * ROW + "px";
      el.style.background = diff ? diffColour(n.b - n.a, maxAbs) : (colours[n.layer] || "#ddd");
      el.textContent = n.name;
      el.addEventListener("click", function () { focus = n; draw(); });
      el.addEventListener("mouseenter", function () { details.textContent = describe(n); });
      el.addEventListener("mouseleave", function () { details.textContent = "\u00a0"; });
      frag.appendChild(el);
      n.el = el;
    });
    graph.appendChild(frag);

    function describe(n) {
      var share = root.w ? " (" + (100 * n.w / root.w).toFixed(1) + "%)" : "";
      if (!diff) return n.name + " \u2014 " + fmt(n.a) + " " + data.unit + share + " \u2014 layer " + n.layer;
      var delta = n.b - n.a, rel = n.a ? " (" + (delta >= 0 ? "+" : "") + (100 * delta / n.a).toFixed(0) + "%)" : " (new in B)";
      return n.name + " \u2014 A " + fmt(n.a) + ", B " + fmt(n.b) + " " + data.unit +
        ", \u0394 " + (delta >= 0 ? "+" : "") + fmt(delta) + rel;
    }

    function within(n) { return n.x >= focus.x - 1e-9 && n.x + n.w <= focus.x + focus.w + 1e-9 && n.d >= focus.d; }
    function isAncestor(n) { for (var p = focus.parent; p; p = p.parent) if (p === n) return true; return false; }

    function draw() {
      var width = graph.clientWidth || 1000, scale = focus.w ? 100 / focus.w : 0, hits = 0;
      var lower = term.toLowerCase();
      nodes.forEach(function (n) {
        var el = n.el, anc = isAncestor(n), show = anc || within(n);
        var pct = anc ? 100 : (n.w * scale);
        if (!show || pct * width / 100 < 0.5) { el.style.display = "none"; return; }
        el.style.display = "";
        el.style.left = (anc ? 0 : (n.x - focus.x) * scale) + "%";
        el.style.width = pct + "%";
        el.style.opacity = anc ? "0.55" : "1";
        el.style.color = pct * width / 100 < 28 ? "transparent" : "";
        var hit = lower && n.name.toLowerCase().indexOf(lower) >= 0;
        el.classList.toggle("fg-hit", !!hit);
        if (hit && !anc) {
          var p = n.parent, nested = false;
          for (; p; p = p.parent) if (p.name.toLowerCase().indexOf(lower) >= 0 && within(p)) nested = true;
          if (!nested) hits += diff ? n.b : n.w;
        }
      });
      reset.style.visibility = focus === root ? "hidden" : "visible";
      matched.textContent = lower ? "matched: " + fmt(hits) + " " + data.unit + (diff ? " in B" : "") +
        (root.w && !diff ? " (" + (100 * hits / root.w).toFixed(1) + "%)" : "") : "";
    }

    reset.addEventListener("click", function () { focus = root; draw(); });
    search.addEventListener("input", function () { term = search.value; draw(); });
    window.addEventListener("resize", draw);
    draw();
  }

  var colours = JSON.parse(document.getElementById("layer-colours").textContent);
  Array.prototype.forEach.call(document.querySelectorAll(".fg"), function (box) {
    var data = JSON.parse(document.getElementById(box.getAttribute("data-src")).textContent);
    Flame(box, data, colours);
    box.setAttribute("data-rendered", "1");
  });
})();
