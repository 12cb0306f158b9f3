// InitEdit box editor for ComfyUI's frontend: a canvas on the InitEdit Region Reroll and InitEdit Layout nodes that
// shows the spec's boxes over the last image ComfyUI produced, and adds a box where you drag. The spec JSON widget
// stays the truth: the canvas only reads it and writes it back; edit the JSON by hand at any time.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NODES = { InitEditRegionReroll: "reroll", InitEditLayout: "layout" };
const COLORS = ["#e63c3c", "#3c8ce6", "#3cbe5a", "#e6b428", "#aa50d2", "#28c8c8"];
let lastImage = null; // URL of the most recent image any node showed (the background)
const editors = new Set();

function round3(v) {
  return Math.round(Math.min(1, Math.max(0, v)) * 1000) / 1000;
}

function readSpec(widget) {
  try {
    const spec = JSON.parse(widget.value || "{}");
    return spec && typeof spec === "object" && !Array.isArray(spec) ? spec : null;
  } catch (e) {
    return null; // the node names the error when queued; the editor leaves broken JSON alone
  }
}

function makeEditor(node, kind) {
  const spec = node.widgets.find((w) => w.name === "spec");
  const root = document.createElement("div");
  root.className = "initedit-box-editor";
  root.style.cssText = "display:flex;flex-direction:column;gap:4px;width:100%;";
  const bar = document.createElement("div");
  bar.style.cssText = "display:flex;gap:4px;align-items:center;font:11px sans-serif;color:#ccc;";
  const phrase = document.createElement("input");
  phrase.placeholder = "phrase for the next box";
  phrase.className = "initedit-phrase";
  phrase.style.cssText = "flex:1;min-width:0;font:11px sans-serif;";
  const undo = document.createElement("button");
  undo.textContent = "Remove last box";
  undo.className = "initedit-remove-last";
  undo.style.cssText = "font:11px sans-serif;";
  if (kind === "layout") bar.append(phrase);
  bar.append(undo);
  const canvas = document.createElement("canvas");
  canvas.className = "initedit-canvas";
  canvas.width = 256;
  canvas.height = 256;
  canvas.style.cssText = "width:100%;aspect-ratio:1/1;background:#111;cursor:crosshair;border:1px solid #444;";
  const note = document.createElement("div");
  note.style.cssText = "font:11px sans-serif;color:#aaa;";
  note.textContent = "Drag on the image to add a box (fractions of the image go into the spec).";
  root.append(bar, canvas, note);
  const image = new Image();
  image.onload = () => draw();
  let drag = null;

  function boxes(s) {
    return ((s && s[kind]) || []).filter((b) => b && Array.isArray(b.box));
  }

  function draw() {
    const ctx = canvas.getContext("2d");
    const W = canvas.width, H = canvas.height;
    ctx.clearRect(0, 0, W, H);
    if (image.complete && image.naturalWidth) {
      canvas.height = Math.round((W * image.naturalHeight) / image.naturalWidth);
      canvas.style.aspectRatio = `${image.naturalWidth}/${image.naturalHeight}`;
      ctx.drawImage(image, 0, 0, W, canvas.height);
    }
    const s = readSpec(spec);
    note.textContent = s ? "Drag on the image to add a box (fractions of the image go into the spec)."
      : "The spec is not valid JSON: fix it in the text box.";
    boxes(s).forEach((b, i) => {
      const [x0, y0, x1, y1] = b.box;
      ctx.strokeStyle = COLORS[i % COLORS.length];
      ctx.lineWidth = 2;
      ctx.strokeRect(x0 * W, y0 * canvas.height, (x1 - x0) * W, (y1 - y0) * canvas.height);
      ctx.fillStyle = ctx.strokeStyle;
      ctx.font = "12px sans-serif";
      ctx.fillText(kind === "layout" ? b.phrase || "?" : `seed ${b.seed ?? -1}`, x0 * W + 3, y0 * canvas.height + 13);
    });
    if (drag && drag.now) {
      ctx.setLineDash([4, 3]);
      ctx.strokeStyle = "#fff";
      ctx.strokeRect(drag.x * W, drag.y * canvas.height, (drag.now.x - drag.x) * W, (drag.now.y - drag.y) * canvas.height);
      ctx.setLineDash([]);
    }
  }

  function at(e) {
    const r = canvas.getBoundingClientRect();
    return { x: (e.clientX - r.left) / r.width, y: (e.clientY - r.top) / r.height };
  }

  function write(s) {
    spec.value = JSON.stringify(s);
    spec.callback?.(spec.value);
    node.setDirtyCanvas?.(true, true);
    draw();
  }

  canvas.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    drag = at(e);
    canvas.setPointerCapture?.(e.pointerId);
    e.stopPropagation();
    e.preventDefault();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    drag.now = at(e);
    draw();
    e.stopPropagation();
  });
  canvas.addEventListener("pointerup", (e) => {
    if (!drag) return;
    const end = at(e);
    const box = [round3(Math.min(drag.x, end.x)), round3(Math.min(drag.y, end.y)),
      round3(Math.max(drag.x, end.x)), round3(Math.max(drag.y, end.y))];
    drag = null;
    e.stopPropagation();
    const s = readSpec(spec);
    if (!s || box[2] - box[0] < 0.01 || box[3] - box[1] < 0.01) return draw();
    const list = Array.isArray(s[kind]) ? s[kind] : [];
    if (kind === "layout") list.push({ phrase: phrase.value.trim() || "object", box });
    else {
      const last = list[list.length - 1];
      list.push({ box, seed: last?.seed ?? 1, strength: last?.strength ?? 1.0, feather: last?.feather ?? 0.05 });
    }
    s[kind] = list;
    write(s);
  });
  undo.addEventListener("click", (e) => {
    e.stopPropagation();
    const s = readSpec(spec);
    if (!s || !Array.isArray(s[kind]) || !s[kind].length) return;
    s[kind].pop();
    if (!s[kind].length) delete s[kind];
    write(s);
  });

  const editor = {
    draw,
    setImage(url) {
      if (url && image.src !== url) image.src = url;
    },
  };
  editors.add(editor);
  if (lastImage) editor.setImage(lastImage);
  const height = () => Math.max(200, (node.size?.[0] || 300) - 20) + 50;
  const widget = node.addDOMWidget("initedit_boxes", "initedit_boxes", root, {
    serialize: false, hideOnZoom: false, getMinHeight: height, getHeight: height,
  });
  widget.computeSize = (width) => [width, height()];
  requestAnimationFrame(() => { // make room for the canvas on a node created at its default size
    const size = node.computeSize?.();
    if (size && size[1] > node.size[1]) node.setSize([Math.max(node.size[0], size[0]), size[1]]);
    node.setDirtyCanvas?.(true, true);
  });
  const onRemoved = node.onRemoved;
  node.onRemoved = function () {
    editors.delete(editor);
    return onRemoved?.apply(this, arguments);
  };
  const callback = spec.callback;
  spec.callback = function () {
    const r = callback?.apply(this, arguments);
    draw();
    return r;
  };
  setTimeout(draw, 0);
  return editor;
}

app.registerExtension({
  name: "InitEdit.BoxEditor",
  setup() {
    api.addEventListener("executed", ({ detail }) => {
      const item = detail?.output?.images?.[0];
      if (!item) return;
      const q = new URLSearchParams({ filename: item.filename, subfolder: item.subfolder || "", type: item.type || "output" });
      lastImage = api.apiURL(`/view?${q}`);
      for (const editor of editors) editor.setImage(lastImage);
    });
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const kind = NODES[nodeData.name];
    if (!kind) return;
    const created = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = created?.apply(this, arguments);
      this.initeditEditor = makeEditor(this, kind);
      return r;
    };
    const configured = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function () {
      const r = configured?.apply(this, arguments);
      this.initeditEditor?.draw();
      return r;
    };
  },
});
