// Content script (top frame only, runs at document_idle): after the page has finished loading and
// the browser is idle, ask the worker whether this page may be sent, then collect the capture
// described in the gateway's contract and hand it to the worker. Nothing here delays the page's
// load event, and nothing from the page is ever evaluated.
(() => {
  if (window.top !== window || globalThis.__malwaresnipperContent) return;
  globalThis.__malwaresnipperContent = true;

  const JS_TYPES = new Set(["", "text/javascript", "application/javascript", "module", "text/ecmascript", "application/ecmascript"]);
  const CARD_FIELD = /card.?num|cc.?num|credit.?card|cardnumber|cvv|cvc|csc|security.?code|expir|exp.?date/i;
  const DOWNLOAD_EXT = /\.(exe|msi|scr|bat|cmd|ps1|vbs|js|jar|apk|dmg|pkg|zip|rar|7z|iso|hta|lnk)(\?|#|$)/i;

  function absolute(url) {
    try {
      return new URL(url, document.baseURI).href;
    } catch {
      return "";
    }
  }

  function sameHost(url) {
    try {
      return new URL(url).hostname === location.hostname;
    } catch {
      return true;
    }
  }

  function isHidden(el) {
    const style = getComputedStyle(el);
    if (style.display === "none" || style.visibility === "hidden" || Number(style.opacity) === 0) return true;
    const box = el.getBoundingClientRect();
    return box.width < 2 || box.height < 2;
  }

  function collectForms(limit) {
    return Array.from(document.forms)
      .slice(0, limit)
      .map((form) => {
        const inputs = Array.from(form.querySelectorAll("input, select, textarea"));
        return {
          action: absolute(form.getAttribute("action") || location.href),
          method: (form.getAttribute("method") || "get").toLowerCase(),
          has_password: inputs.some((i) => (i.type || "").toLowerCase() === "password"),
          has_card: inputs.some(
            (i) =>
              (i.getAttribute("autocomplete") || "").toLowerCase().startsWith("cc-") ||
              CARD_FIELD.test(`${i.name || ""} ${i.id || ""} ${i.getAttribute("placeholder") || ""}`),
          ),
          input_count: inputs.filter((i) => (i.type || "").toLowerCase() !== "hidden").length,
          hidden: isHidden(form),
        };
      });
  }

  function collectIframes(limit) {
    return Array.from(document.querySelectorAll("iframe, frame"))
      .slice(0, limit)
      .map((frame) => {
        const box = frame.getBoundingClientRect();
        return {
          src: absolute(frame.getAttribute("src") || "about:blank"),
          hidden: isHidden(frame),
          width: Math.round(box.width),
          height: Math.round(box.height),
        };
      });
  }

  function collectScripts(limits) {
    const inline = [];
    const external = [];
    let total = 0;
    for (const script of document.scripts) {
      const type = (script.getAttribute("type") || "").trim().toLowerCase();
      if (!JS_TYPES.has(type)) continue;
      if (script.src) {
        const url = absolute(script.src);
        if (/^https?:/.test(url) && !external.includes(url)) external.push(url);
      } else if (inline.length < limits.maxInlineScripts && total < limits.maxTotalScriptChars) {
        const text = script.text.slice(0, Math.min(limits.maxScriptChars, limits.maxTotalScriptChars - total));
        if (!text.trim()) continue;
        total += text.length;
        inline.push({ text, inline: true });
      }
    }
    return { inline, external: external.slice(0, limits.maxExternalScripts), total };
  }

  /**
   * Read an external script's text from the page's origin: same-origin scripts, or cross-origin
   * ones whose server allows CORS. `force-cache` normally answers from the copy the page already
   * loaded; no cookies are sent. Gives up after the timeout or the size cap.
   */
  async function fetchScript(url, limits) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), limits.externalFetchTimeoutMs);
    try {
      const response = await fetch(url, { credentials: "omit", cache: "force-cache", mode: "cors", signal: controller.signal });
      if (!response.ok || !response.body) return null;
      const declared = Number(response.headers.get("content-length") || 0);
      if (declared > limits.maxExternalScriptBytes) return { text: null, truncated: true };
      const reader = response.body.getReader();
      const chunks = [];
      let size = 0;
      let truncated = false;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        size += value.length;
        if (size > limits.maxExternalScriptBytes) {
          truncated = true;
          reader.cancel();
          break;
        }
      }
      const bytes = new Uint8Array(Math.min(size, limits.maxExternalScriptBytes));
      let offset = 0;
      for (const chunk of chunks) {
        const part = chunk.subarray(0, bytes.length - offset);
        bytes.set(part, offset);
        offset += part.length;
        if (offset >= bytes.length) break;
      }
      return { text: new TextDecoder().decode(bytes), truncated };
    } catch {
      return null; // cross-origin without CORS, network error, timeout
    } finally {
      clearTimeout(timer);
    }
  }

  function collectDom(limits) {
    const links = Array.from(document.querySelectorAll("a[href], area[href]"))
      .map((a) => a.href)
      .filter((href) => /^https?:/.test(href));
    const resources = Array.from(document.querySelectorAll("img[src], script[src], link[href], iframe[src], embed[src], object[data], video[src], audio[src], source[src]"))
      .map((el) => absolute(el.getAttribute("src") || el.getAttribute("href") || el.getAttribute("data") || ""))
      .filter((url) => /^https?:/.test(url));
    const refresh = document.querySelector('meta[http-equiv="refresh" i]');
    const metaRefresh = refresh ? (refresh.getAttribute("content") || "").slice(0, 2000) : null;
    const refreshTarget = metaRefresh ? (/url\s*=\s*['"]?([^'"]+)/i.exec(metaRefresh) || [])[1] : "";
    const contextMenu = [document.documentElement, document.body]
      .filter(Boolean)
      .some((el) => /return\s+false|preventDefault/i.test(el.getAttribute("oncontextmenu") || ""));
    const dom = {
      forms: collectForms(limits.maxForms),
      iframes: collectIframes(limits.maxIframes),
      element_count: document.getElementsByTagName("*").length,
      link_count: links.length,
      external_link_count: links.filter((href) => !sameHost(href)).length,
      resource_count: resources.length,
      external_resource_count: resources.filter((url) => !sameHost(url)).length,
      right_click_disabled: contextMenu,
      text_excerpt: ((document.body && document.body.innerText) || "").slice(0, limits.maxTextExcerpt),
    };
    if (metaRefresh !== null) dom.meta_refresh = metaRefresh;
    if (refreshTarget && DOWNLOAD_EXT.test(refreshTarget)) dom.auto_download = absolute(refreshTarget);
    return dom;
  }

  async function buildCapture(limits) {
    const { inline, external, total } = collectScripts(limits);
    const html = document.documentElement ? document.documentElement.outerHTML : "";
    const capture = {
      url: location.href,
      title: document.title || "",
      html: html.slice(0, limits.maxHtmlChars),
      content_type: document.contentType || "text/html",
      scripts: inline,
      dom: collectDom(limits),
    };
    const fetched = await Promise.all(external.map((url) => fetchScript(url, limits)));
    let budget = limits.maxTotalScriptChars - total; // inline and external texts share one budget
    external.forEach((url, i) => {
      const entry = { url, inline: false };
      const text = fetched[i] && fetched[i].text;
      if (typeof text === "string" && text.length <= budget) {
        entry.text = text;
        budget -= text.length;
      }
      capture.scripts.push(entry);
    });
    return capture;
  }

  async function run() {
    let decision;
    try {
      decision = await chrome.runtime.sendMessage({ type: "page_loaded" });
    } catch {
      return; // the extension was reloaded or is disabled
    }
    if (!decision || !decision.capture) return;
    const capture = await buildCapture(decision.limits);
    try {
      await chrome.runtime.sendMessage({ type: "capture", capture });
    } catch {
      /* the worker will see the next page */
    }
  }

  function schedule() {
    const idle = globalThis.requestIdleCallback || ((fn) => setTimeout(fn, 50));
    idle(() => run(), { timeout: 2000 });
  }

  chrome.runtime.onMessage.addListener((msg) => {
    if (msg && msg.type === "show_overlay" && msg.url === location.href && globalThis.MalwareSnipperOverlay) {
      globalThis.MalwareSnipperOverlay.show(msg, (action) => chrome.runtime.sendMessage({ type: "overlay_action", action }));
    }
    return false;
  });

  if (document.readyState === "complete") schedule();
  else window.addEventListener("load", schedule, { once: true });
  // A page restored from the back/forward cache is a new visit for the badge and the popup.
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) schedule();
  });
})();
