// A small bounded queue of captures that could not reach the gateway, retried later.
// Kept in chrome.storage.session (memory only): page content never lands on disk, and the queue
// is dropped with the browser session. Oldest entries go first when a bound is hit.

export const MAX_QUEUE_ENTRIES = 20;
export const MAX_QUEUE_CHARS = 3_000_000;

const area = chrome.storage.session;
let lock = Promise.resolve();

/** Run `fn` after every earlier queue operation: read-modify-write without races. */
function serialized(fn) {
  const run = lock.then(fn, fn);
  lock = run.catch(() => undefined);
  return run;
}

async function read() {
  const { queue } = await area.get("queue");
  return queue || [];
}

async function write(queue) {
  await area.set({ queue, queueLength: queue.length });
}

export function enqueue(entry) {
  return serialized(async () => {
    let queue = (await read()).filter((e) => e.capture.url !== entry.capture.url);
    queue.push({ ...entry, queuedAt: new Date().toISOString(), size: JSON.stringify(entry.capture).length });
    while (queue.length > MAX_QUEUE_ENTRIES || queue.reduce((n, e) => n + e.size, 0) > MAX_QUEUE_CHARS) {
      queue = queue.slice(1);
      if (!queue.length) break;
    }
    await write(queue);
    return queue.length;
  });
}

/**
 * Send queued captures one by one with `send(entry)` (resolves true when delivered); stops at the
 * first failure so an offline gateway costs one request per retry.
 */
export function drain(send) {
  return serialized(async () => {
    let queue = await read();
    let delivered = 0;
    while (queue.length) {
      const ok = await send(queue[0]);
      if (!ok) break;
      queue = queue.slice(1);
      delivered += 1;
      await write(queue);
    }
    return { delivered, left: queue.length };
  });
}

export async function queueLength() {
  const { queueLength: n } = await area.get("queueLength");
  return n || 0;
}
