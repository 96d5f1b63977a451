// ctexplore CT viewer: canvas-2D renderer for anywidget (and for the standalone HTML export).
// The volume arrives once as an int16 buffer; slicing, windowing, zoom/pan and read-outs run here.
const PRESETS = [
  ["brain", 40, 80], ["subdural", 80, 200], ["stroke", 40, 40],
  ["bone", 600, 2800], ["soft_tissue", 40, 400], ["lung", -600, 1500],
];
const STEP_KEYS = { ArrowUp: 1, ArrowDown: -1, PageUp: 10, PageDown: -10 };
const WHEEL_NOTCH_PX = 40;

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function buildLut(center, width) {
  // int16 value v -> RGBA at lut[v + 32768]
  const lut = new Uint32Array(65536);
  const low = center - width / 2;
  const little = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
  for (let i = 0; i < 65536; i++) {
    let g = Math.round(((i - 32768 - low) / width) * 255);
    g = g < 0 ? 0 : g > 255 ? 255 : g;
    lut[i] = little ? (0xff000000 | (g << 16) | (g << 8) | g) : ((g << 24) | (g << 16) | (g << 8) | 0xff);
  }
  return lut;
}

function packRgba(c) {
  return (c[3] << 24) | (c[2] << 16) | (c[1] << 8) | c[0];
}

export function createViewer(model, root, pushed = null) {
  let vol = null;  // {hu: Int16Array, padding, overlays[], shape, strides}
  const meta = () => model.get("_meta");
  let lut = buildLut(model.get("center"), model.get("width"));
  let lutVersion = 0;  // bumps with every new window, so unchanged slices are not re-extracted
  let paints = 0;
  let hover = null;  // {plane, row, col} of the displayed pixel under the pointer
  let activePlane = model.get("plane");
  let lastPong = Date.now();
  const view = {};  // per plane zoom/pan
  // the state goes to Python once input pauses: every message to the kernel (and its echo and
  // busy/idle replies) costs the page main-thread time just when the next wheel notch arrives
  const SYNC_PAUSE_MS = 150, SYNC_AT_LEAST_MS = 1000;
  let syncTimer = null, unsyncedSince = null;
  const unsynced = new Map();  // trait -> the page's value Python has not been sent yet

  root.classList.add("ctexplore-viewer");
  root.tabIndex = 0;
  // Lumino (JupyterLab, Notebook 7) skips its shortcuts for events from inside such an element
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  root.setAttribute("data-p-suppress-shortcuts", "true");

  const toolbar = el("div", "ctv-toolbar");
  const presetMenu = el("select", "ctv-preset");
  PRESETS.forEach(([name, c, w], i) => {
    const option = el("option", "", `${i + 1} ${name} ${c}/${w}`);
    option.value = name;
    presetMenu.appendChild(option);
  });
  presetMenu.appendChild(Object.assign(el("option", "", "custom"), { value: "custom" }));
  const toolMenu = el("select", "ctv-tool");
  [["probe", "click: crosshair"], ["line", "measure: line (mm)"], ["box", "measure: box (HU)"], ["ellipse", "measure: ellipse (HU)"]]
    .forEach(([value, label]) => toolMenu.appendChild(Object.assign(el("option", "", label), { value })));
  const layoutButton = el("button", "ctv-layout", "1 plane / 3 planes");
  const conventionButton = el("button", "ctv-convention", "");
  const resetButton = el("button", "ctv-reset", "reset");
  const clearButton = el("button", "ctv-clear", "clear measurements");
  // big volumes arrive thinned; this asks the kernel for full resolution around the crosshair
  const resolutionButton = el("button", "ctv-resolution", "");
  toolbar.append(presetMenu, toolMenu, layoutButton, conventionButton, resetButton, clearButton, resolutionButton);

  const panelsBox = el("div", "ctv-panels");
  const side = el("div", "ctv-side");
  const colourbar = el("canvas", "ctv-colourbar");
  colourbar.width = 60; colourbar.height = 200;
  const legend = el("div", "ctv-legend");
  side.append(colourbar, legend);
  const body = el("div", "ctv-body");
  body.append(panelsBox, side);

  const status = el("div", "ctv-status");
  const pointerText = el("span", "ctv-pointer", "HU under pointer: -");
  const crossText = el("span", "ctv-crosshair-hu", "");
  const windowText = el("span", "ctv-window", "");
  status.append(pointerText, crossText, windowText);
  const measureBox = el("div", "ctv-measurements");
  const note = el("div", "ctv-note", "");
  const banner = el("div", "ctv-banner", "loading the volume into the page ...");
  root.append(banner, toolbar, body, status, measureBox, note);

  const panels = {};
  for (const plane of ["axial", "coronal", "sagittal"]) {
    const panel = el("div", `ctv-panel ctv-${plane}`);
    panel.dataset.plane = plane;
    const label = el("div", "ctv-slice-label", "");
    const canvas = el("canvas", "ctv-canvas");
    panel.append(label, canvas);
    panelsBox.appendChild(panel);
    panels[plane] = { panel, label, canvas, ctx: canvas.getContext("2d"), image: null, buffer: null, cssW: 1, cssH: 1, key: "", paints: 0 };
    view[plane] = { zoom: 1, panX: 0, panY: 0 };
  }

  // changes made here are painted here; the change listeners below are for Python's changes
  let localChange = false;
  function setLocal(name, value) {
    localChange = true;
    try { model.set(name, value); } finally { localChange = false; }
    unsynced.set(name, value);
  }
  function newLut(center, width) { lutVersion += 1; return buildLut(center, width); }

  // ----- geometry -----------------------------------------------------------------------
  function geom(plane) { return meta().planes[plane]; }
  // the page's colours (RGB) come from Python (viewer.MARK_COLOURS), as the static picture's do
  function colour(name) { return meta().colours[name]; }
  // a measurement keeps its place on the patient when the convention is switched after it was made
  function shownPixels(plane, m) {
    if (!m.convention || m.convention === model.get("convention") || plane === "sagittal") return m;
    const last = dims(plane).cols - 1, [r0, c0, r1, c1] = m.pixels;
    return { ...m, pixels: [r0, last - c0, r1, last - c1] };
  }
  function flipH(plane) {
    const g = geom(plane);
    const neuro = model.get("convention") === "neurological" && plane !== "sagittal";
    return neuro ? !g.flip_horizontal : g.flip_horizontal;
  }
  function dims(plane) {
    const g = geom(plane), shape = meta().shape;
    return { rows: shape[g.vertical_axis], cols: shape[g.horizontal_axis] };
  }
  function sliceIndex(plane) { return model.get("crosshair")[geom(plane).slice_axis]; }
  function voxelAt(plane, row, col) {
    const g = geom(plane), d = dims(plane);
    const v = model.get("crosshair").slice();
    v[g.vertical_axis] = g.flip_vertical ? d.rows - 1 - row : row;
    v[g.horizontal_axis] = flipH(plane) ? d.cols - 1 - col : col;
    return v;
  }
  function pixelOf(plane, voxel) {
    const g = geom(plane), d = dims(plane);
    const r = voxel[g.vertical_axis], c = voxel[g.horizontal_axis];
    return [g.flip_vertical ? d.rows - 1 - r : r, flipH(plane) ? d.cols - 1 - c : c];
  }
  function offset(v) { const s = vol.strides; return v[0] * s[0] + v[1] * s[1] + v[2] * s[2]; }
  function huText(v) {
    if (!vol || !vol.complete) return "- (loading)";
    const o = offset(v);
    if (vol.padding && vol.padding[o]) return "padding (outside the scanned field)";
    return `${vol.hu[o]} HU`;
  }
  function positionText(plane) {
    const m = meta(), g = geom(plane), i = sliceIndex(plane);
    const mm = g.positions[i];
    const where = g.position_axis ? `${g.position_axis} = ${mm.toFixed(1)} mm` : `${mm.toFixed(1)} mm along normal`;
    return `${plane} ${i}/${g.n_slices - 1} | ${where}`;
  }

  // ----- painting -----------------------------------------------------------------------
  function layoutPanels() {
    const one = model.get("plane_layout") === "one";
    const main = model.get("plane");
    const width = Math.max(200, (root.clientWidth || 600) - side.offsetWidth - 16);
    const shown = one ? [main] : ["axial", "coronal", "sagittal"];
    const gap = 6;  // .ctv-panels gap: three panels and two gaps fit the width, no wrapping
    const perPanel = one ? width : Math.max(120, Math.floor((width - 2 * gap) / 3) - 1);
    for (const plane of ["axial", "coronal", "sagittal"]) {
      const p = panels[plane];
      p.panel.style.display = shown.includes(plane) ? "" : "none";
      if (!shown.includes(plane) || !meta().planes) continue;
      const g = geom(plane), d = dims(plane);
      const wmm = d.cols * g.pixel_width, hmm = d.rows * g.pixel_height;
      let cssW = perPanel, cssH = cssW * hmm / wmm;  // square millimetres at any width
      const maxH = one ? 640 : 420;
      if (cssH > maxH) { cssH = maxH; cssW = cssH * wmm / hmm; }
      p.cssW = Math.round(cssW); p.cssH = Math.round(cssH);
      const ratio = window.devicePixelRatio || 1;
      p.canvas.style.width = `${p.cssW}px`; p.canvas.style.height = `${p.cssH}px`;
      p.panel.style.width = `${p.cssW}px`;  // the slice label wraps inside its panel
      p.canvas.width = Math.round(p.cssW * ratio); p.canvas.height = Math.round(p.cssH * ratio);
      p.mmPerCss = wmm / p.cssW;
    }
  }

  // Stage 1: copy the plane's HU, padding and labels out of the volume into contiguous arrays in
  // display order. Sagittal and coronal reads stride through memory (slow), so this runs only when
  // the slice or the flip changes; a new window only re-runs stage 2 on these arrays.
  function gather(plane) {
    const g = geom(plane), d = dims(plane), p = panels[plane], n = d.rows * d.cols;
    const key = `${sliceIndex(plane)}|${flipH(plane)}`;
    if (p.plane && p.gatherKey === key && p.plane.length === n) return false;
    // while the volume loads only the planes of the first message are in the page (other slices of
    // the whole-volume array are still zeros, which would read as 0 HU): keep the last picture
    if (!vol.complete && sliceIndex(plane) !== vol.planesCrosshair[g.slice_axis]) return false;
    // before the whole-volume array exists, the plane comes from the first message's own buffer
    const source = vol.hu ? vol : vol.planes[g.slice_axis];
    p.gatherKey = key;
    const s = source.strides, hu = source.hu, pad = source.padding;
    const sources = [pad, ...source.overlays.map((o) => o.data)];
    const sized = (array, Type) => (array && array.length === n ? array : new Type(n));
    p.plane = sized(p.plane, Int16Array);
    p.padPlane = pad ? sized(p.padPlane, Uint8Array) : null;
    p.labelPlanes = source.overlays.map((_, i) => sized(p.labelPlanes && p.labelPlanes[i], Uint8Array));
    const base = sliceIndex(plane) * s[g.slice_axis];
    const sv = s[g.vertical_axis], sh = s[g.horizontal_axis];
    const fv = g.flip_vertical, fh = flipH(plane), step = fh ? -sh : sh;
    const targets = [p.padPlane, ...p.labelPlanes];
    for (let row = 0; row < d.rows; row++) {
      const r = fv ? d.rows - 1 - row : row;
      const start = base + r * sv + (fh ? (d.cols - 1) * sh : 0), k0 = row * d.cols;
      if (step === 1) {  // a stored row: one block copy
        p.plane.set(hu.subarray(start, start + d.cols), k0);
        for (let i = 0; i < sources.length; i++) {
          if (sources[i]) targets[i].set(sources[i].subarray(start, start + d.cols), k0);
        }
        continue;
      }
      for (let col = 0, o = start; col < d.cols; col++, o += step) p.plane[k0 + col] = hu[o];
      for (let i = 0; i < sources.length; i++) {
        const src = sources[i], dst = targets[i];
        if (!src) continue;
        for (let col = 0, o = start; col < d.cols; col++, o += step) dst[k0 + col] = src[o];
      }
    }
    return true;
  }

  // Stage 2: window (one LUT lookup per pixel), padding colour and overlays into the panel's image.
  function extract(plane) {
    const d = dims(plane), p = panels[plane];
    const gathered = gather(plane);
    if (!p.plane) return;  // nothing of this plane in the page yet
    const key = `${lutVersion}|${model.get("overlay_visible")}|${model.get("opacity")}`;
    if (!gathered && p.image && p.key === key && p.image.width === d.cols && p.image.height === d.rows) return;
    p.key = key;
    if (!p.image || p.image.width !== d.cols || p.image.height !== d.rows) {
      p.buffer = document.createElement("canvas");
      p.buffer.width = d.cols; p.buffer.height = d.rows;
      p.image = new ImageData(d.cols, d.rows);
    }
    const out = new Uint32Array(p.image.data.buffer), values = p.plane, pad = p.padPlane, n = values.length;
    const padColour = packRgba([...colour("padding"), 255]);
    if (pad) for (let k = 0; k < n; k++) out[k] = pad[k] ? padColour : lut[values[k] + 32768];
    else for (let k = 0; k < n; k++) out[k] = lut[values[k] + 32768];
    const visible = model.get("overlay_visible"), alpha = model.get("opacity");
    const rgba = p.image.data;
    vol.overlays.forEach((ov, i) => {
      if (!(visible[i] ?? true)) return;
      const labels = p.labelPlanes[i];
      for (let k = 0; k < n; k++) {
        const label = labels[k];
        if (!label) continue;
        const c = ov.colours[label % ov.colours.length], q = 4 * k;
        rgba[q] = rgba[q] * (1 - alpha) + c[0] * alpha;
        rgba[q + 1] = rgba[q + 1] * (1 - alpha) + c[1] * alpha;
        rgba[q + 2] = rgba[q + 2] * (1 - alpha) + c[2] * alpha;
      }
    });
    p.buffer.getContext("2d").putImageData(p.image, 0, 0);
  }

  function toScreen(plane) {
    // display pixel (col, row) -> canvas css px
    const p = panels[plane], d = dims(plane), v = view[plane];
    const sx = p.cssW / d.cols * v.zoom, sy = p.cssH / d.rows * v.zoom;
    const ox = (p.cssW - d.cols * sx) / 2 + v.panX, oy = (p.cssH - d.rows * sy) / 2 + v.panY;
    return { sx, sy, ox, oy };
  }

  function paint(plane) {
    const p = panels[plane];
    if (!vol || p.panel.style.display === "none") return;
    extract(plane);
    const ctx = p.ctx, ratio = p.canvas.width / p.cssW, t = toScreen(plane), d = dims(plane);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = "#000"; ctx.fillRect(0, 0, p.cssW, p.cssH);
    ctx.imageSmoothingEnabled = t.sx < 2;
    if (p.buffer) ctx.drawImage(p.buffer, t.ox, t.oy, d.cols * t.sx, d.rows * t.sy);
    // crosshair
    const [cr, cc] = pixelOf(plane, model.get("crosshair"));
    const x = t.ox + (cc + 0.5) * t.sx, y = t.oy + (cr + 0.5) * t.sy;
    ctx.strokeStyle = `rgba(${colour("crosshair")},${meta().crosshair_alpha})`; ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(x, 0); ctx.lineTo(x, y - 6); ctx.moveTo(x, y + 6); ctx.lineTo(x, p.cssH);
    ctx.moveTo(0, y); ctx.lineTo(x - 6, y); ctx.moveTo(x + 6, y); ctx.lineTo(p.cssW, y);
    ctx.stroke();
    // orientation letters
    const letters = meta().letters[plane];
    let [left, right] = [letters.left, letters.right];
    if (flipH(plane) !== geom(plane).flip_horizontal) [left, right] = [right, left];
    ctx.fillStyle = `rgb(${colour("letters")})`; ctx.font = "bold 14px sans-serif";
    ctx.textBaseline = "middle"; ctx.textAlign = "left"; ctx.fillText(left, 4, p.cssH / 2);
    ctx.textAlign = "right"; ctx.fillText(right, p.cssW - 4, p.cssH / 2);
    ctx.textAlign = "center"; ctx.textBaseline = "top"; ctx.fillText(letters.top, p.cssW / 2, 4);
    ctx.textBaseline = "bottom"; ctx.fillText(letters.bottom, p.cssW / 2, p.cssH - 4);
    // scale bar: a round number of mm about a fifth of the width
    const mmPerPx = geom(plane).pixel_width / t.sx;
    const target = p.cssW / 5 * mmPerPx;
    const nice = [1, 2, 5, 10, 20, 50, 100, 200].reduce((a, b) => (b <= target ? b : a), 1);
    const barPx = nice / mmPerPx;
    ctx.fillStyle = "#fff"; ctx.fillRect(p.cssW - 10 - barPx, p.cssH - 22, barPx, 3);
    ctx.font = "11px sans-serif"; ctx.textAlign = "right"; ctx.textBaseline = "bottom";
    ctx.fillText(`${nice} mm`, p.cssW - 10, p.cssH - 25);
    // measurements on this slice
    for (const m of model.get("measurements")) {
      if (m.plane !== plane || m.index !== sliceIndex(plane)) continue;
      drawShape(ctx, t, shownPixels(plane, m), `rgb(${colour("measurement")})`);
    }
    if (drag && drag.shape && drag.plane === plane) drawShape(ctx, t, drag.shape, "#ff9100");
    p.label.textContent = positionText(plane);
    // paint counters on the DOM: tests and benchmarks/bench_viewer_browser.py read them
    p.paints += 1; paints += 1;
    p.panel.dataset.paints = p.paints;
    p.panel.dataset.paintedIndex = sliceIndex(plane);
    root.dataset.paints = paints;
    root.dataset.lastPaintMs = performance.now().toFixed(2);
    if (!root.dataset.firstPaintMs) root.dataset.firstPaintMs = root.dataset.lastPaintMs;
  }

  function drawShape(ctx, t, m, colour) {
    const [r0, c0, r1, c1] = m.pixels;
    const x0 = t.ox + (c0 + 0.5) * t.sx, y0 = t.oy + (r0 + 0.5) * t.sy;
    const x1 = t.ox + (c1 + 0.5) * t.sx, y1 = t.oy + (r1 + 0.5) * t.sy;
    ctx.strokeStyle = colour; ctx.lineWidth = 2; ctx.beginPath();
    if (m.kind === "line") { ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); }
    else if (m.kind === "box") ctx.rect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
    else ctx.ellipse((x0 + x1) / 2, (y0 + y1) / 2, Math.abs(x1 - x0) / 2, Math.abs(y1 - y0) / 2, 0, 0, 2 * Math.PI);
    ctx.stroke();
    if (m.text) {
      ctx.fillStyle = colour; ctx.font = "12px sans-serif"; ctx.textAlign = "left"; ctx.textBaseline = "bottom";
      ctx.fillText(m.text, Math.max(x0, x1) + 4, Math.min(y0, y1));
    }
  }

  function paintColourbar() {
    const ctx = colourbar.getContext("2d"), c = model.get("center"), w = model.get("width");
    ctx.fillStyle = "#111"; ctx.fillRect(0, 0, 60, 200);
    const grad = ctx.createLinearGradient(0, 180, 0, 20);
    grad.addColorStop(0, "#000"); grad.addColorStop(1, "#fff");
    ctx.fillStyle = grad; ctx.fillRect(4, 20, 14, 160);
    ctx.fillStyle = "#eee"; ctx.font = "11px sans-serif"; ctx.textAlign = "left"; ctx.textBaseline = "middle";
    ctx.fillText(`${Math.round(c + w / 2)}`, 21, 22);
    ctx.fillText(`${Math.round(c)}`, 21, 100);
    ctx.fillText(`${Math.round(c - w / 2)}`, 21, 178);
    ctx.textBaseline = "top"; ctx.fillText("HU", 4, 4);
    ctx.fillStyle = `rgb(${colour("padding")})`; ctx.fillRect(4, 186, 14, 10);
    ctx.fillStyle = "#eee"; ctx.textBaseline = "middle"; ctx.fillText("pad", 21, 191);
  }

  function pointerReadout() {
    // the voxel under a still pointer changes when the slice does
    const voxel = hover && vol ? voxelAt(hover.plane, hover.row, hover.col) : null;
    pointerText.textContent = voxel ? `HU under pointer (${voxel.join(", ")}): ${huText(voxel)}` : "HU under pointer: -";
  }

  function readouts() {
    pointerReadout();
    const c = model.get("center"), w = model.get("width");
    windowText.textContent = `window ${model.get("window_name")} ${+c.toFixed(1)}/${+w.toFixed(1)}`;
    const x = model.get("crosshair");
    crossText.textContent = `crosshair (${x.join(", ")}): ${huText(x)}`;
    presetMenu.value = PRESETS.some(([n]) => n === model.get("window_name")) ? model.get("window_name") : "custom";
    const resolution = meta().resolution || "full";
    resolutionButton.style.display = resolution === "full" || model.standalone ? "none" : "";
    resolutionButton.textContent = resolution === "preview"
      ? "full resolution around the crosshair" : "back to the whole volume (preview)";
    root.dataset.resolution = resolution;
    conventionButton.textContent = model.get("convention") === "radiological"
      ? "radiological (patient R on screen left)" : "neurological (patient R on screen right)";
    measureBox.style.color = `rgb(${colour("measurement")})`;
    measureBox.textContent = model.get("measurements").map((m, i) => `#${i + 1} ${m.plane} ${m.index}: ${m.text}`).join("\n");
  }

  function paintAll() {
    for (const plane of ["axial", "coronal", "sagittal"]) paint(plane);
    paintColourbar();
    readouts();
  }

  // ----- state changes ------------------------------------------------------------------
  function sync() {
    const now = performance.now();
    if (unsyncedSince === null) unsyncedSince = now;
    clearTimeout(syncTimer);
    const wait = Math.max(0, Math.min(SYNC_PAUSE_MS, unsyncedSince + SYNC_AT_LEAST_MS - now));
    syncTimer = setTimeout(() => {
      syncTimer = null; unsyncedSince = null; unsynced.clear();
      model.save_changes();
    }, wait);
  }
  // a value from the kernel for a trait the page has changed since its last message (the echo of an
  // older message) must not undo the newer value: the page's value stands and goes out with the next
  function keepUnsynced(name) {
    if (!unsynced.has(name)) return false;
    const value = unsynced.get(name);
    localChange = true;
    try { model.set(name, value); } finally { localChange = false; }
    return true;
  }
  function setCrosshair(v, planes) {
    if (!vol.complete) return;  // only the planes through the crosshair are in the page yet
    const shape = meta().shape;
    v = v.map((x, i) => Math.max(0, Math.min(shape[i] - 1, Math.round(x))));
    setLocal("crosshair", v);
    sync();
    for (const p of planes) paint(p);
    readouts();
  }
  function step(plane, n) {
    const g = geom(plane), v = model.get("crosshair").slice();
    v[g.slice_axis] += n;
    // only this plane changes picture, painted now; the others just move their crosshair line, next frame
    setCrosshair(v, [plane]);
    for (const other of ["axial", "coronal", "sagittal"]) if (other !== plane) requestPaint(other);
  }
  function setWindow(center, width, name) {
    setLocal("center", center); setLocal("width", Math.max(1, width)); setLocal("window_name", name);
    lut = newLut(center, Math.max(1, width));
    sync();
    paintAll();
  }
  function resetView() {
    for (const plane in view) view[plane] = { zoom: 1, panX: 0, panY: 0 };
    const w = meta().initial_window;
    lut = newLut(w[0], w[1]);
    setLocal("center", w[0]); setLocal("width", w[1]); setLocal("window_name", w[2]);
    sync();
    paintAll();
  }

  // ----- input --------------------------------------------------------------------------
  function planeAt(event) {
    const panel = event.target.closest && event.target.closest(".ctv-panel");
    return panel ? panel.dataset.plane : null;
  }
  function pixelAt(plane, event) {
    const p = panels[plane], rect = p.canvas.getBoundingClientRect(), t = toScreen(plane), d = dims(plane);
    const col = Math.floor((event.clientX - rect.left - t.ox) / t.sx);
    const row = Math.floor((event.clientY - rect.top - t.oy) / t.sy);
    if (row < 0 || col < 0 || row >= d.rows || col >= d.cols) return null;
    return [row, col];
  }

  let wheelAccumulated = 0;
  panelsBox.addEventListener("wheel", (event) => {
    const plane = planeAt(event);
    if (!plane || !vol || !vol.hu) return;
    event.preventDefault();
    event.stopPropagation();
    activePlane = plane;
    if (event.ctrlKey) {  // pinch or ctrl+wheel zooms
      view[plane].zoom = Math.max(0.5, Math.min(16, view[plane].zoom * (event.deltaY < 0 ? 1.15 : 1 / 1.15)));
      paint(plane);
      return;
    }
    // one notch (deltaMode lines, or >= 40 px) is one slice; trackpads accumulate
    wheelAccumulated += event.deltaMode ? Math.sign(event.deltaY) * WHEEL_NOTCH_PX : event.deltaY;
    if (Math.abs(wheelAccumulated) < WHEEL_NOTCH_PX) return;
    const n = Math.sign(wheelAccumulated);
    wheelAccumulated = 0;
    step(plane, -n);  // wheel away from you goes up (towards the head / higher index)
  }, { passive: false });

  root.addEventListener("keydown", (event) => {
    if (!vol || !vol.hu || event.target.tagName === "SELECT") return;
    const plane = activePlane;
    let handled = true;
    if (event.key in STEP_KEYS) step(plane, STEP_KEYS[event.key]);
    else if (event.key >= "1" && event.key <= String(PRESETS.length)) {
      const [name, c, w] = PRESETS[Number(event.key) - 1];
      setWindow(c, w, name);
    } else if (event.key === "r") resetView();
    else if (event.key === "+" || event.key === "=") { view[plane].zoom *= 1.25; paint(plane); }
    else if (event.key === "-") { view[plane].zoom = Math.max(0.5, view[plane].zoom / 1.25); paint(plane); }
    else handled = false;
    if (handled) { event.preventDefault(); event.stopPropagation(); }
  });
  root.addEventListener("keyup", (event) => { if (event.key in STEP_KEYS) event.stopPropagation(); });

  let drag = null;
  panelsBox.addEventListener("contextmenu", (event) => event.preventDefault());
  panelsBox.addEventListener("pointerdown", (event) => {
    const plane = planeAt(event);
    if (!plane || !vol || !vol.hu) return;
    root.focus({ preventScroll: true });
    activePlane = plane;
    event.target.setPointerCapture && event.target.setPointerCapture(event.pointerId);
    const tool = toolMenu.value;
    const pan = event.button === 2 || event.shiftKey || event.button === 1;
    drag = {
      plane, x: event.clientX, y: event.clientY, moved: false, pan, tool,
      center: model.get("center"), width: model.get("width"),
      panX: view[plane].panX, panY: view[plane].panY, start: pixelAt(plane, event), shape: null,
    };
    event.preventDefault();
  });
  panelsBox.addEventListener("pointermove", (event) => {
    const plane = planeAt(event);
    // keys follow the pointer: over the picture they step its slices, not the notebook
    if (plane && document.activeElement !== root) root.focus({ preventScroll: true });
    if (plane) activePlane = plane;
    if (plane && vol && !drag) {
      const px = pixelAt(plane, event);
      hover = px ? { plane, row: px[0], col: px[1] } : null;
      pointerReadout();
    }
    if (drag) dragTo(event);
  });
  function dragTo(event) {
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (!drag.moved && Math.hypot(dx, dy) < 3) return;
    drag.moved = true;
    if (drag.pan) {
      view[drag.plane].panX = drag.panX + dx; view[drag.plane].panY = drag.panY + dy;
      requestPaint(drag.plane);
    } else if (drag.tool === "probe") {
      // horizontal drag changes width, vertical changes centre (down = brighter image = higher centre)
      const scale = Math.max(1, drag.width / 200);
      setWindow(drag.center + dy * scale, Math.max(1, drag.width + dx * scale * 2), "custom");
    } else if (drag.start) {
      const end = pixelAt(drag.plane, event) || drag.start;
      drag.shape = { kind: drag.tool, pixels: [...drag.start, ...end] };
      requestPaint(drag.plane);
    }
  }
  let paintRequested = new Set();
  function requestPaint(plane) {
    if (paintRequested.size === 0) requestAnimationFrame(() => { const s = paintRequested; paintRequested = new Set(); s.forEach(paint); });
    paintRequested.add(plane);
  }
  panelsBox.addEventListener("pointerup", (event) => {
    if (!drag) return;
    dragTo(event);  // the last move may not have had its own pointermove
    const d = drag;
    drag = null;
    if (!d.moved && !d.pan && d.start) {
      setCrosshair(voxelAt(d.plane, d.start[0], d.start[1]), ["axial", "coronal", "sagittal"]);
      return;
    }
    if (d.shape && d.tool !== "probe") {
      const m = measure(d.plane, d.shape);
      if (m) {
        setLocal("measurements", [...model.get("measurements"), m]);
        sync();
      }
      paint(d.plane); readouts();
    }
  });
  panelsBox.addEventListener("dblclick", (event) => { event.preventDefault(); resetView(); });

  function measure(plane, shape) {
    const g = geom(plane);
    const [r0, c0, r1, c1] = shape.pixels;
    const base = { kind: shape.kind, plane, index: sliceIndex(plane), pixels: shape.pixels, convention: model.get("convention") };
    if (shape.kind === "line") {
      const mm = Math.hypot((r1 - r0) * g.pixel_height, (c1 - c0) * g.pixel_width);
      return { ...base, length_mm: mm, text: `${mm.toFixed(1)} mm` };
    }
    const top = Math.min(r0, r1), bottom = Math.max(r0, r1), left = Math.min(c0, c1), right = Math.max(c0, c1);
    const cy = (top + bottom) / 2, cx = (left + right) / 2, ry = (bottom - top) / 2 + 0.5, rx = (right - left) / 2 + 0.5;
    let n = 0, sum = 0, sum2 = 0, min = Infinity, max = -Infinity, padded = 0;
    for (let r = top; r <= bottom; r++) for (let c = left; c <= right; c++) {
      if (shape.kind === "ellipse" && ((r - cy) / ry) ** 2 + ((c - cx) / rx) ** 2 > 1) continue;
      const o = offset(voxelAt(plane, r, c));
      if (vol.padding && vol.padding[o]) { padded++; continue; }
      const v = vol.hu[o];
      n++; sum += v; sum2 += v * v; if (v < min) min = v; if (v > max) max = v;
    }
    if (!n) return null;
    const mean = sum / n, sd = Math.sqrt(Math.max(0, sum2 / n - mean * mean));
    const area = (n + padded) * g.pixel_height * g.pixel_width;
    return {
      ...base, n_voxels: n, mean, sd, min, max, area_mm2: area,
      text: `mean ${mean.toFixed(1)} SD ${sd.toFixed(1)} min ${min} max ${max} HU, ${area.toFixed(0)} mm²` + (padded ? `, ${padded} padding px left out` : ""),
    };
  }

  presetMenu.addEventListener("change", () => {
    const preset = PRESETS.find(([n]) => n === presetMenu.value);
    if (preset) setWindow(preset[1], preset[2], preset[0]);
    root.focus({ preventScroll: true });
  });
  layoutButton.addEventListener("click", () => {
    setLocal("plane_layout", model.get("plane_layout") === "one" ? "three" : "one");
    if (model.get("plane_layout") === "one") setLocal("plane", activePlane);
    sync(); layoutPanels(); paintAll();
  });
  conventionButton.addEventListener("click", () => {
    setLocal("convention", model.get("convention") === "radiological" ? "neurological" : "radiological");
    sync(); paintAll();
  });
  resetButton.addEventListener("click", resetView);
  resolutionButton.addEventListener("click", () => {
    banner.style.display = ""; banner.textContent = "asking the kernel for the other resolution ...";
    model.send({ type: meta().resolution === "preview" ? "request_full" : "request_preview" });
  });
  clearButton.addEventListener("click", () => { setLocal("measurements", []); sync(); paintAll(); });

  function buildLegend() {
    legend.replaceChildren();
    if (!vol || !vol.overlays.length) return;
    vol.overlays.forEach((ov, i) => {
      const row = el("label", "ctv-overlay");
      const box = el("input"); box.type = "checkbox"; box.checked = model.get("overlay_visible")[i] ?? true;
      box.dataset.index = i;
      box.addEventListener("change", () => {
        const visible = model.get("overlay_visible").slice();
        while (visible.length < vol.overlays.length) visible.push(true);
        visible[i] = box.checked;
        setLocal("overlay_visible", visible); sync(); paintAll();
      });
      const swatch = (entry) => { const s = el("span", "ctv-swatch"); s.style.background = `rgb(${entry.colour})`; return s; };
      // a mask has one colour, beside its name; a label map one per value present, listed below it
      const mask = ov.legend.length === 1 && ov.legend[0].text === ov.name;
      row.append(box, ...(mask ? [swatch(ov.legend[0])] : []), el("span", "", ov.name));
      legend.appendChild(row);
      if (!mask) {
        for (const entry of ov.legend) {
          const line = el("div", "ctv-legend-entry");
          line.append(swatch(entry), el("span", "", entry.text.slice(ov.name.length + 1)));
          legend.appendChild(line);
        }
      }
    });
    const opacity = el("input", "ctv-opacity"); opacity.type = "range"; opacity.min = 0; opacity.max = 1; opacity.step = 0.05;
    opacity.value = model.get("opacity");
    opacity.addEventListener("input", () => { setLocal("opacity", Number(opacity.value)); sync(); paintAll(); });
    legend.append(el("div", "", "opacity"), opacity);
  }

  // ----- Python side --------------------------------------------------------------------
  function showVolume() {
    banner.style.display = meta().banner ? "" : "none";
    banner.textContent = meta().banner || "";
    note.textContent = meta().note || "";
    buildLegend();
    layoutPanels();
    paintAll();
  }
  function volumeDone(buffers) {
    vol.complete = true;
    root.dataset.volumeReceivedMs = performance.now().toFixed(2);
    root.dataset.volumeBytes = (+root.dataset.volumeBytes || 0) + buffers.reduce((n, b) => n + b.byteLength, 0);
    root.dataset.ready = "true";
  }
  const bytesOf = (b) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  function copyInto(target, buffer, elementOffset) {  // byte copy: buffers need not be 2-byte aligned
    new Uint8Array(target.buffer).set(bytesOf(buffer), elementOffset * target.BYTES_PER_ELEMENT);
  }
  function receive(message, buffers) {
    if (message.type === "pong") { lastPong = Date.now(); return; }
    const shape = meta().shape, strides = [shape[1] * shape[2], shape[2], 1];
    if (message.type === "volume") {  // everything at once (the standalone HTML file)
      const raw = buffers[0];
      const hu = new Int16Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
      let next = 1;
      const padding = message.padding ? bytesOf(buffers[next++]) : null;
      const overlays = message.overlays.map((o) => ({ ...o, data: bytesOf(buffers[next++]) }));
      vol = { hu, padding, overlays, strides, complete: true };
      showVolume();
      volumeDone(buffers);
    } else if (message.type === "volume_start") {
      // the three planes through the crosshair: painted from their own buffers now; the whole-volume
      // array (128 MiB for 256 x 512 x 512) is made after that picture, and the rest arrives in slabs
      root.dataset.volumeBytes = buffers.reduce((total, b) => total + b.byteLength, 0);
      root.dataset.planesReceivedMs = performance.now().toFixed(2);
      const n = shape[0] * strides[0];
      const planes = [0, 1, 2].map((axis) => {
        const kept = [0, 1, 2].filter((a) => a !== axis), s = [0, 0, 0];
        s[kept[1]] = 1; s[kept[0]] = shape[kept[1]];
        const layer = (L, Type) => {  // copied: buffers need not be aligned for an Int16Array view
          const b = buffers[3 * L + axis], out = new Type(b.byteLength / Type.BYTES_PER_ELEMENT);
          new Uint8Array(out.buffer).set(bytesOf(b));
          return out;
        };
        let L = 1;
        const padding = message.padding ? layer(L++, Uint8Array) : null;
        const overlays = message.overlays.map(() => ({ data: layer(L++, Uint8Array) }));
        return { hu: layer(0, Int16Array), padding, overlays, strides: s };
      });
      vol = {
        hu: null, padding: null, overlays: message.overlays.map((o) => ({ ...o, data: null })),
        strides, loaded: 0, complete: false, planes, planesCrosshair: message.crosshair,
      };
      showVolume();
      banner.style.display = ""; banner.textContent = "loading the volume into the page: 0 %";
      const planesVol = vol;
      requestAnimationFrame(() => {  // after the first picture is up
        if (vol !== planesVol) return;
        vol.hu = new Int16Array(n);
        vol.padding = message.padding ? new Uint8Array(n) : null;
        vol.overlays.forEach((o) => { o.data = new Uint8Array(n); });
        const [k, j, i] = message.crosshair;
        volumeLayers().forEach((layer, L) => {
          const axial = planes[0], coronal = planes[1], sagittal = planes[2];
          const pick = (p) => (L === 0 ? p.hu : vol.padding && L === 1 ? p.padding : p.overlays[L - 1 - (vol.padding ? 1 : 0)].data);
          layer.set(pick(axial), k * strides[0]);
          const cor = pick(coronal), sag = pick(sagittal);
          for (let z = 0; z < shape[0]; z++) layer.set(cor.subarray(z * shape[2], (z + 1) * shape[2]), z * strides[0] + j * strides[1]);
          for (let z = 0, q = 0; z < shape[0]; z++) {
            for (let r = 0; r < shape[1]; r++, q++) layer[z * strides[0] + r * strides[1] + i] = sag[q];
          }
        });
        vol.planes = null;
        for (const plane in panels) panels[plane].gatherKey = "";
        model.send({ type: "request_rest" });
      });
    } else if (message.type === "volume_chunk" && vol && !vol.complete) {
      volumeLayers().forEach((layer, L) => copyInto(layer, buffers[L], message.first * strides[0]));
      vol.loaded += message.count;
      root.dataset.volumeBytes = +root.dataset.volumeBytes + buffers.reduce((total, b) => total + b.byteLength, 0);
      banner.textContent = `loading the volume into the page: ${Math.round((100 * vol.loaded) / shape[0])} %`;
      if (vol.loaded >= shape[0]) {
        volumeDone([]);
        banner.style.display = meta().banner ? "" : "none";
        banner.textContent = meta().banner || "";
        for (const plane in panels) panels[plane].gatherKey = "";
        paintAll();
      }
    }
  }
  function volumeLayers() { return [vol.hu, vol.padding, ...vol.overlays.map((o) => o.data)].filter(Boolean); }
  // pushed planes are for a view about to be made (render hands them over); this one has its volume
  model.on("msg:custom", (message, buffers) => { if (!message.pushed) receive(message, buffers); });
  // a new grid (full resolution slab or preview) is announced by new metadata, then its buffers follow
  model.on("change:_meta", () => {
    vol = null;
    for (const plane in panels) { panels[plane].key = ""; panels[plane].gatherKey = ""; panels[plane].plane = null; }
    delete root.dataset.ready;
  });
  // Python may set several traits at once: one repaint in the next frame
  let remotePaint = null;
  function paintFromPython(relayout) {
    if (remotePaint) { remotePaint.relayout ||= relayout; return; }
    remotePaint = { relayout };
    requestAnimationFrame(() => {
      const r = remotePaint; remotePaint = null;
      lut = newLut(model.get("center"), model.get("width"));
      if (!vol) return;
      if (r.relayout) layoutPanels();
      paintAll();
    });
  }
  for (const name of ["crosshair", "center", "width", "window_name", "convention", "overlay_visible", "opacity", "measurements"]) {
    model.on(`change:${name}`, () => { if (!localChange && !keepUnsynced(name)) paintFromPython(false); });
  }
  for (const name of ["plane_layout", "plane"]) {
    model.on(`change:${name}`, () => { if (!localChange && !keepUnsynced(name)) paintFromPython(true); });
  }

  const resize = new ResizeObserver(() => { if (vol) { layoutPanels(); paintAll(); } });
  resize.observe(root);
  // a kernel that stops answering is said so; the picture keeps working in the page
  const heartbeat = model.standalone ? null : setInterval(() => {
    model.send({ type: "ping" });
    if (vol && Date.now() - lastPong > 6000) {
      banner.style.display = "";
      banner.textContent = "kernel not answering: browsing continues in the page, but Python no longer sees the viewer state";
      root.dataset.kernel = "lost";
    } else if (vol && root.dataset.kernel === "lost") {
      root.dataset.kernel = "ok"; banner.style.display = meta().banner ? "" : "none"; banner.textContent = meta().banner || "";
    }
  }, 2000);
  root.dataset.volumeRequestedMs = performance.now().toFixed(2);
  // planes the kernel pushed before this view existed are painted at once; otherwise ask for them
  if (pushed) requestAnimationFrame(() => receive(...pushed));
  else model.send({ type: "request_volume" });
  return () => {
    resize.disconnect();
    if (heartbeat) clearInterval(heartbeat);
    if (syncTimer) { clearTimeout(syncTimer); model.save_changes(); }  // what the page changed last
  };
}

// _static_id -> [message, buffers] of the planes the kernel sent with the cell's output, before any view
const pushedPlanes = new Map();

function initialize({ model }) {
  model.on("msg:custom", (message, buffers) => {
    if (message.type === "volume_start" && message.pushed) pushedPlanes.set(model.get("_static_id"), [message, buffers]);
  });
}

function render({ model, el: root }) {
  // the static picture printed beside the widget is for readers without a kernel
  const style = document.createElement("style");
  style.textContent = `img[alt^="ctexplore viewer ${model.get("_static_id")}"] { display: none; }`;
  document.head.appendChild(style);
  const id = model.get("_static_id"), pushed = pushedPlanes.get(id) || null;
  pushedPlanes.delete(id);  // a second view of the same widget asks for its own copy
  return createViewer(model, root, pushed);
}

export default { initialize, render };
