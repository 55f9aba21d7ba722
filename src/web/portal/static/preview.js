// The preview page's instant controls: window presets, free window/level and the frame slider
// change the image in place (without this script the same controls are plain GET forms).
(function () {
  "use strict";
  var img = document.getElementById("preview");
  if (!img) { return; }
  var uid = img.getAttribute("data-uid");
  var size = new URLSearchParams(img.getAttribute("src").split("?")[1] || "").get("size") || "768";
  var state = new URLSearchParams(window.location.search);

  function show() {
    var render = new URLSearchParams();
    render.set("frame", state.get("frame") || "0");
    render.set("size", size);
    var page = new URLSearchParams();
    page.set("frame", state.get("frame") || "0");
    if (state.get("preset")) {
      render.set("preset", state.get("preset"));
      page.set("preset", state.get("preset"));
    } else if (state.get("wc") && state.get("ww")) {
      ["wc", "ww"].forEach(function (k) { render.set(k, state.get(k)); page.set(k, state.get(k)); });
    }
    img.src = "/instances/" + uid + "/preview.jpg?" + render.toString();
    window.history.replaceState(null, "", "/instances/" + uid + "/view?" + page.toString());
    document.querySelectorAll(".frame-field").forEach(function (f) { f.value = state.get("frame") || "0"; });
    document.querySelectorAll("button[data-preset]").forEach(function (b) {
      b.classList.toggle("active", b.getAttribute("data-preset") === state.get("preset"));
    });
  }

  document.querySelectorAll("button[data-preset]").forEach(function (b) {
    b.addEventListener("click", function (e) {
      e.preventDefault();
      state.set("preset", b.getAttribute("data-preset"));
      state.delete("wc");
      state.delete("ww");
      show();
    });
  });

  var windowForm = document.getElementById("window");
  if (windowForm) {
    windowForm.addEventListener("submit", function (e) {
      var wc = parseFloat(document.getElementById("wc").value);
      var ww = parseFloat(document.getElementById("ww").value);
      if (!isFinite(wc) || !isFinite(ww) || ww < 1) { return; } // let the server explain
      e.preventDefault();
      state.delete("preset");
      state.set("wc", String(wc));
      state.set("ww", String(ww));
      show();
    });
  }

  var slider = document.getElementById("frame-slider");
  if (slider) {
    slider.addEventListener("input", function () {
      state.set("frame", slider.value);
      var out = document.getElementById("frame-number");
      if (out) { out.textContent = slider.value; }
      show();
    });
  }
})();
