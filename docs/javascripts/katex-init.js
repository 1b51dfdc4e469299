// Render the equations that pymdownx.arithmatex (generic mode) leaves as \( … \) and \[ … \].
// `document$` is Material's page observable (it also fires after instant navigation); fall back to
// DOMContentLoaded under any other theme.
(function () {
  function render(root) {
    renderMathInElement(root, {
      delimiters: [
        { left: "\\(", right: "\\)", display: false },
        { left: "\\[", right: "\\]", display: true },
      ],
      throwOnError: false,
    });
  }
  if (typeof document$ !== "undefined") {
    document$.subscribe(function () { render(document.body); });
  } else {
    document.addEventListener("DOMContentLoaded", function () { render(document.body); });
  }
})();
