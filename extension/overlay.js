// The warning shown over a page the gateway found MALICIOUS. It lives in a closed Shadow DOM so
// the page cannot read, restyle or click it; every string is inserted with textContent; buttons
// only react to real (trusted) clicks, never to events the page synthesises.
(() => {
  if (globalThis.MalwareSnipperOverlay) return;

  const CSS = `
    :host { all: initial; position: fixed !important; inset: 0 !important; z-index: 2147483647 !important; display: block !important; }
    .backdrop { position: fixed; inset: 0; background: rgba(40, 0, 0, 0.92); display: flex; align-items: center; justify-content: center;
                font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111; }
    .card { background: #fff; max-width: 560px; width: calc(100% - 48px); border-radius: 12px; padding: 28px 32px;
            box-shadow: 0 20px 60px rgba(0,0,0,.5); border-top: 8px solid #dc2626; }
    h1 { font-size: 22px; margin: 0 0 8px; color: #b91c1c; }
    .host { font-family: ui-monospace, monospace; word-break: break-all; color: #444; margin: 0 0 16px; }
    .headline { margin: 0 0 12px; font-weight: 600; }
    ul { margin: 0 0 20px; padding-left: 20px; color: #333; }
    li { margin: 2px 0; }
    .buttons { display: flex; flex-wrap: wrap; gap: 10px; }
    button { font: inherit; border-radius: 8px; padding: 8px 16px; cursor: pointer; border: 1px solid #999; background: #f4f4f5; color: #111; }
    button.leave { background: #b91c1c; border-color: #b91c1c; color: #fff; font-weight: 600; }
    button:focus-visible { outline: 3px solid #2563eb; outline-offset: 2px; }
    .error { color: #b91c1c; margin: 12px 0 0; min-height: 1em; }
    .brand { font-size: 12px; color: #666; margin-top: 16px; }
    .reports { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin-top: 14px; font-size: 14px; color: #444; }
    button.report { font-size: 14px; padding: 4px 10px; background: #fff; }
    .reported { font-size: 14px; color: #166534; margin: 8px 0 0; min-height: 1em; }
  `;

  let current = null; // { host, observer }

  function element(tag, props = {}, text = "") {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) el.setAttribute(key, value);
    if (text) el.textContent = text;
    return el;
  }

  function remove() {
    if (!current) return;
    current.observer.disconnect();
    current.host.remove();
    current = null;
  }

  /** Show the warning; `onAction(action)` gets "leave", "proceed" or "allow_site". */
  function show(info, onAction) {
    remove();
    const host = document.createElement("div");
    const root = host.attachShadow({ mode: "closed" });
    const sheet = new CSSStyleSheet(); // constructed sheets are not subject to the page's CSP
    sheet.replaceSync(CSS);
    root.adoptedStyleSheets = [sheet];

    const backdrop = element("div", { class: "backdrop" });
    const card = element("div", { class: "card", role: "alertdialog", "aria-modal": "true", "aria-labelledby": "ms-title", "aria-describedby": "ms-headline" });
    card.append(
      element("h1", { id: "ms-title" }, "Warning: this page is dangerous"),
      element("p", { class: "host", "data-ms": "host" }, String(info.host || "")),
      element("p", { class: "headline", id: "ms-headline", "data-ms": "headline" }, String(info.headline || "")),
    );
    const reasons = Array.isArray(info.reasons) ? info.reasons.slice(0, 4) : [];
    if (reasons.length) {
      const list = element("ul", { "data-ms": "reasons" });
      for (const reason of reasons) list.append(element("li", {}, String(reason)));
      card.append(element("p", {}, "What MalwareSnipper found:"), list);
    }
    const leave = element("button", { class: "leave", "data-ms": "leave", type: "button" }, "Leave this page");
    const proceed = element("button", { "data-ms": "proceed", type: "button" }, "Proceed anyway");
    const allow = element("button", { "data-ms": "allow", type: "button" }, "Always allow this site");
    const error = element("p", { class: "error", "data-ms": "error", role: "status" });
    const buttons = element("div", { class: "buttons" });
    buttons.append(leave, proceed, allow);
    // Reports tell the gateway's administrator the verdict was wrong (or right); they change nothing here.
    const safe = element("button", { class: "report", "data-ms": "report-safe", type: "button" }, "This page is safe");
    const dangerous = element("button", { class: "report", "data-ms": "report-dangerous", type: "button" }, "This page is dangerous");
    const reported = element("p", { class: "reported", "data-ms": "reported", role: "status" });
    const reports = element("div", { class: "reports" });
    reports.append(element("span", {}, "Tell the administrator:"), safe, dangerous);
    card.append(buttons, error, reports, reported, element("p", { class: "brand" }, "MalwareSnipper"));
    backdrop.append(card);
    root.append(backdrop);

    const trusted = (handler) => (event) => {
      if (!event.isTrusted) return; // the page cannot click these for the user
      event.preventDefault();
      event.stopPropagation();
      handler();
    };
    leave.addEventListener("click", trusted(() => onAction("leave")));
    proceed.addEventListener("click", trusted(() => {
      remove();
      onAction("proceed");
    }));
    allow.addEventListener("click", trusted(async () => {
      allow.disabled = true;
      error.textContent = "";
      let answer;
      try {
        answer = await onAction("allow_site");
      } catch (err) {
        answer = { ok: false, error: String((err && err.message) || err) };
      }
      if (answer && answer.ok) remove();
      else {
        allow.disabled = false;
        error.textContent = (answer && answer.error) || "The gateway could not be reached.";
      }
    }));

    for (const [button, action] of [[safe, "report_safe"], [dangerous, "report_dangerous"]]) {
      button.addEventListener("click", trusted(async () => {
        safe.disabled = dangerous.disabled = true;
        let answer;
        try {
          answer = await onAction(action);
        } catch (err) {
          answer = { ok: false, error: String((err && err.message) || err) };
        }
        if (answer && answer.ok) reported.textContent = "Thank you: your report was sent to the gateway.";
        else {
          safe.disabled = dangerous.disabled = false;
          reported.textContent = (answer && answer.error) || "The gateway could not be reached.";
        }
      }));
    }

    // Keep the warning in place if the page removes it.
    const observer = new MutationObserver(() => {
      if (current && !host.isConnected) document.documentElement.append(host);
    });
    current = { host, observer };
    document.documentElement.append(host);
    observer.observe(document.documentElement, { childList: true });
    leave.focus();
  }

  globalThis.MalwareSnipperOverlay = { show, remove, isShown: () => Boolean(current) };
})();
