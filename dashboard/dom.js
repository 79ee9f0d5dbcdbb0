// Safe DOM building: page-derived strings only ever become text nodes or safe attributes.
//
// Everything shown on this dashboard may come from a hostile page (titles, URLs, indicator
// evidence, script locations), so nothing here touches innerHTML, and attributes that can run
// or load code (on*, href, src, style) cannot be set through `el()`.

const SAFE_ATTRIBUTES = new Set([
  "id", "class", "type", "title", "value", "name", "role", "colspan", "max", "min",
  "aria-label", "aria-selected", "aria-live", "datetime", "scope",
]);

/**
 * Create an element. `props`: `class`, `text`, `dataset` (object), `on` (object of listeners),
 * `disabled`, or any attribute in SAFE_ATTRIBUTES. Children: nodes or strings (strings become
 * text nodes). Anything else throws, so a mistake is loud rather than an injection point.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = String(value);
    else if (key === "text") node.textContent = String(value);
    else if (key === "dataset") {
      for (const [k, v] of Object.entries(value)) if (v !== undefined && v !== null) node.dataset[k] = String(v);
    } else if (key === "on") {
      for (const [event, listener] of Object.entries(value)) node.addEventListener(event, listener);
    } else if (key === "disabled") node.disabled = Boolean(value);
    else if (SAFE_ATTRIBUTES.has(key)) node.setAttribute(key, value === true ? "" : String(value));
    else throw new Error(`el(): attribute "${key}" is not allowed`);
  }
  append(node, children);
  return node;
}

/** Append nodes or strings (as text) to `parent`, skipping null/undefined. */
export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Remove every child of `node`. */
export function clear(node) {
  node.replaceChildren();
  return node;
}

/** Set text only when it changed (cheap updates under a burst of events). */
export function setText(node, value) {
  const text = value === undefined || value === null ? "" : String(value);
  if (node.textContent !== text) node.textContent = text;
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
