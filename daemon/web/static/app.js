// Progressive enhancement only: every form works without this script.
// Shows how many people are ticked for a merge and disables the button below two.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("merge");
  if (!form) { return; }
  var button = form.querySelector("button");
  function update() {
    var n = document.querySelectorAll('input[form="merge"][name="person"]:checked').length;
    button.textContent = n ? "Merge " + n : "Merge";
    button.disabled = n < 2;
  }
  document.addEventListener("change", update);
  update();
});

// The Review page: keys y / n / s press the answer buttons, q follows the stop link,
// as `facecluster review` on a terminal. Ignored while typing in a field.
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("review");
  if (!form) { return; }
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey ||
        (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA"))) {
      return;
    }
    var hit = form.querySelector('[data-key="' + event.key.toLowerCase() + '"]');
    if (hit) {
      event.preventDefault();
      hit.click();
    }
  });
});
