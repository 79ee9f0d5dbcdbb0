// A small bounded queue of captures that could not reach the gateway, retried later.
// Kept in chrome.storage.session (memory only): page content never lands on disk, and the queue
// is dropped with the browser session. Oldest entries go first when a bound is hit.
// Each capture has its own key ("q:<id>") and a small index lists them in order, so adding or
// sending one capture writes (and announces through storage.onChanged) only that capture.

export const MAX_QUEUE_ENTRIES = 20;
export const MAX_QUEUE_CHARS = 3_000_000;

const area = chrome.storage.session;
let lock = Promise.resolve();
let counter = 0;

/** Run `fn` after every earlier queue operation: read-modify-write without races. */
function serialized(fn) {
  const run = lock.then(fn, fn);
  lock = run.catch(() => undefined);
  return run;
}

async function readIndex() {
  const { queueIndex } = await area.get("queueIndex");
  return queueIndex || [];
}

async function writeIndex(index) {
  await area.set({ queueIndex: index, queueLength: index.length });
}

export function enqueue(entry) {
  return serialized(async () => {
    const size = JSON.stringify(entry.capture).length;
    const id = `${Date.now().toString(36)}-${(counter++).toString(36)}`;
    let index = await readIndex();
    const dropped = index.filter((e) => e.url === entry.capture.url).map((e) => e.id);
    index = index.filter((e) => e.url !== entry.capture.url);
    index.push({ id, url: entry.capture.url, size, queuedAt: new Date().toISOString() });
    while (index.length > MAX_QUEUE_ENTRIES || (index.length > 1 && index.reduce((n, e) => n + e.size, 0) > MAX_QUEUE_CHARS)) {
      dropped.push(index.shift().id);
    }
    if (index.length === 1 && size > MAX_QUEUE_CHARS) {
      dropped.push(index.shift().id); // one capture larger than the whole queue is not kept
    }
    if (dropped.length) await area.remove(dropped.map((d) => `q:${d}`));
    if (index.some((e) => e.id === id)) await area.set({ [`q:${id}`]: entry });
    await writeIndex(index);
    return index.length;
  });
}

/**
 * Send queued captures one by one with `send(entry)` (resolves true when delivered or refused for
 * good); stops at the first failure so an offline gateway costs one request per retry.
 */
export function drain(send) {
  return serialized(async () => {
    let index = await readIndex();
    let delivered = 0;
    while (index.length) {
      const key = `q:${index[0].id}`;
      const entry = (await area.get(key))[key];
      if (entry && !(await send(entry))) break;
      await area.remove(key);
      index = index.slice(1);
      delivered += entry ? 1 : 0;
      await writeIndex(index);
    }
    return { delivered, left: index.length };
  });
}

export async function queueLength() {
  const { queueLength: n } = await area.get("queueLength");
  return n || 0;
}
