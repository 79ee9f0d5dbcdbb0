// The event-stream client: hello with the token, snapshot, replay from last_seq, live events,
// and reconnection with exponential backoff so a gateway restart loses nothing.

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10_000;

export class EventStream {
  /**
   * @param {object} handlers
   *   resolveUrl(): Promise<string>  where to connect (from GET /api/v1/health)
   *   getToken(): string|null
   *   onSnapshot(msg, {resumed}), onEvent(msg), onMessage(msg) for other types,
   *   onState(state, detail) with state "connecting" | "online" | "offline",
   *   onUnauthorized()  the server closed with 4401
   */
  constructor(handlers) {
    this.h = handlers;
    this.lastSeq = null;       // highest seq applied; sent as last_seq on reconnect
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = true;
    this.url = null;
    this.connecting = false;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = null;
      ws.close(1000, "signed out");
    }
    this.lastSeq = null;
    this.h.onState("offline", "signed out");
  }

  async connect() {
    if (this.stopped || this.connecting) return;
    this.connecting = true;
    try {
      await this.open();
    } finally {
      this.connecting = false;
    }
  }

  async open() {
    this.h.onState("connecting", this.attempt ? `reconnecting (attempt ${this.attempt + 1})` : "connecting");
    try {
      this.url = await this.h.resolveUrl();
    } catch {
      // The gateway may be down: keep the last known URL, or retry later.
      if (!this.url) return this.retry("gateway unreachable");
    }
    if (this.stopped) return;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      return this.retry("bad events URL");
    }
    this.ws = ws;
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: "hello", token: this.h.getToken(), last_seq: this.lastSeq }));
    };
    ws.onmessage = (message) => this.receive(message.data);
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (event.code === 4401) {
        this.stopped = true;
        this.h.onState("offline", "token refused");
        this.h.onUnauthorized();
        return;
      }
      const why = event.code === 4008 ? "dropped: too slow" : "disconnected";
      this.retry(why);
    };
    ws.onerror = () => { /* onclose follows and schedules the retry */ };
  }

  /** Reconnect now instead of waiting out the backoff (the browser just came back online). */
  nudge() {
    if (this.stopped || this.ws || this.connecting) return;
    clearTimeout(this.timer);
    this.connect();
  }

  retry(why) {
    if (this.stopped) return;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.attempt += 1;
    this.h.onState("offline", `${why}; retrying in ${(delay / 1000).toFixed(1)} s`);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  receive(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "snapshot") {
      const resumed = this.lastSeq !== null;
      // First connection: start after the snapshot. Reconnection: keep our seq so the replay
      // fills the gap, unless the gateway's counter went backwards (its history was reset).
      if (typeof msg.seq === "number" && (this.lastSeq === null || msg.seq < this.lastSeq)) this.lastSeq = msg.seq;
      this.attempt = 0;
      this.h.onState("online", resumed ? "live (caught up)" : "live");
      this.h.onSnapshot(msg, { resumed });
    } else if (msg.type === "event") {
      if (typeof msg.seq === "number") {
        if (this.lastSeq !== null && msg.seq <= this.lastSeq) return;  // already applied
        this.lastSeq = msg.seq;
      }
      this.h.onEvent(msg);
    } else {
      this.h.onMessage(msg);
    }
  }
}
