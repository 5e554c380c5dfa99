// Draws every chart of the page: each <script type="application/json" data-chart="ID">
// holds a Plotly figure for the element ID. No inline script: the CSP allows none.
(function () {
  "use strict";
  document.querySelectorAll("script[type='application/json'][data-chart]").forEach(function (node) {
    var target = document.getElementById(node.getAttribute("data-chart"));
    if (!target || typeof Plotly === "undefined") { return; }
    var figure = JSON.parse(node.textContent);
    Plotly.newPlot(target, figure.data, figure.layout, {responsive: true, displaylogo: false});
  });
})();
