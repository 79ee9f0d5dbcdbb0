// One WebSocket to the gateway's event stream. Browsers cannot set Authorization on a WebSocket,
// so the token goes in the first message ({"type": "hello"}), never in the URL.
// Reconnects with a growing delay while the worker lives; the worker's alarm reconnects after a wake.

const MAX_BACKOFF_MS = 10_000;
const KEEPALIVE_MS = 20_000;

export class EventStream {
  /** `handlers` = { onOpen(), onMessage(msg), onClose({code, reason}) }. */
  constructor(handlers) {
    this.handlers = handlers;
    this.ws = null;
    this.url = "";
    this.token = "";
    this.backoff = 1000;
    this.retryTimer = null;
    this.keepalive = null;
    this.stopped = true;
    this.authenticated = false;
  }

  get isOpen() {
    return Boolean(this.ws && this.ws.readyState === WebSocket.OPEN && this.authenticated);
  }

  get isActive() {
    return Boolean(this.ws && (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING));
  }

  connect(url, token) {
    if (this.isActive && url === this.url && token === this.token) return;
    this.close();
    this.stopped = false;
    this.url = url;
    this.token = token;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (err) {
      this.handlers.onClose({ code: 0, reason: String(err && err.message) });
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    this.authenticated = false;
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: "hello", token, last_seq: null }));
    };
    ws.onmessage = (event) => {
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      if (msg.type === "snapshot" && !this.authenticated) {
        this.authenticated = true;
        this.backoff = 1000;
        this.startKeepalive();
        this.handlers.onOpen();
      }
      this.handlers.onMessage(msg);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return; // an older socket we replaced
      this.ws = null;
      this.authenticated = false;
      this.stopKeepalive();
      this.handlers.onClose({ code: event.code, reason: event.reason });
      if (!this.stopped) this.scheduleRetry(event.code === 4401 ? 60_000 : undefined);
    };
  }

  /** Try again later (the gateway was unreachable before a socket could even be opened). */
  retryLater() {
    this.stopped = false;
    this.scheduleRetry();
  }

  scheduleRetry(delay) {
    clearTimeout(this.retryTimer);
    const wait = delay || this.backoff;
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    this.retryTimer = setTimeout(() => this.handlers.onRetry && this.handlers.onRetry(), wait);
  }

  // Chrome (116+) keeps an extension worker alive while WebSocket messages flow; a small
  // application message every 20 s keeps it alive during quiet times.
  startKeepalive() {
    this.stopKeepalive();
    this.keepalive = setInterval(() => {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "ping" }));
    }, KEEPALIVE_MS);
  }

  stopKeepalive() {
    clearInterval(this.keepalive);
    this.keepalive = null;
  }

  close() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.stopKeepalive();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      this.authenticated = false;
      try {
        ws.close(1000, "client closing");
      } catch {
        /* already closed */
      }
    }
  }
}
