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
