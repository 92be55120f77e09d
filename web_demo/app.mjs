// The web demo: the project's exported .tflite in MediaPipe Tasks' ImageSegmenter (WASM, CPU).
//
// Preprocessing contract (ksac_runtime/preprocess.py): our tools LETTERBOX an image (scaled to fit, aspect
// kept, at the TOP-LEFT, bottom/right padding with the mean colour). MediaPipe STRETCHES its input to the
// model's size, so the page draws the image at the top-left of a SQUARE canvas of side max(w, h) filled
// with rgb(128,128,128) (the mean 127.5, rounded), segments that square and crops the category mask's
// top-left w x h region. Masks are reported at the image's own size.
//
// window.segmentImage(url) -> Promise<{width, height, mask, labels, ms}> is the hook for tests.
// Query parameters: ?model=FILE.tflite (default model.tflite, beside the page), ?delegate=GPU (default CPU).

import { FilesetResolver, ImageSegmenter } from './node_modules/@mediapipe/tasks-vision/vision_bundle.mjs';

const WASM_DIR = new URL('./node_modules/@mediapipe/tasks-vision/wasm', import.meta.url).href;
const PAD_RGB = 'rgb(128,128,128)';
const OVERLAY_ALPHA = 128; // 50 %, as evaluation/predict.py's overlay
const params = new URLSearchParams(location.search);
const DELEGATE = (params.get('delegate') || 'CPU').toUpperCase() === 'GPU' ? 'GPU' : 'CPU';

const $ = (id) => document.getElementById(id);
const statusEl = $('status');
const errorEl = $('error');

let fileset = null;
let segmenter = null;
let labels = [];
let modelReady = null; // Promise of the current model load
let webcam = null; // {stream, running}
const recentMs = [];

// ---- messages ----------------------------------------------------------------------------------

function showStatus(text) {
  statusEl.textContent = text;
}

function showError(text) {
  errorEl.textContent = text;
  errorEl.hidden = false;
  console.error(text);
}

function clearError() {
  errorEl.hidden = true;
  errorEl.textContent = '';
}

// ---- colours -----------------------------------------------------------------------------------

// The PASCAL VOC palette (evaluation/predict.py's voc_palette).
const PALETTE = (() => {
  const p = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    let c = i, r = 0, g = 0, b = 0;
    for (let j = 0; j < 8; j++) {
      r |= ((c >> 0) & 1) << (7 - j);
      g |= ((c >> 1) & 1) << (7 - j);
      b |= ((c >> 2) & 1) << (7 - j);
      c >>= 3;
    }
    p.set([r, g, b], i * 3);
  }
  return p;
})();

const colour = (k) => `rgb(${PALETTE[3 * k]},${PALETTE[3 * k + 1]},${PALETTE[3 * k + 2]})`;
const labelName = (k) => labels[k] ?? `class ${k}`;

// ---- the model ---------------------------------------------------------------------------------

function checkTflite(bytes, name) {
  // Bytes 4..8 of every TFLite flatbuffer are the schema's file identifier "TFL3".
  const id = bytes.length >= 8 ? String.fromCharCode(...bytes.subarray(4, 8)) : '';
  if (id !== 'TFL3') {
    throw new Error(`${name} is not a .tflite file (no "TFL3" identifier at bytes 4..8; got ${bytes.length} bytes).`);
  }
}

async function loadModelBytes(bytes, name) {
  if (segmenter) {
    segmenter.close();
    segmenter = null;
  }
  labels = [];
  $('model-name').textContent = `model: ${name}`;
  checkTflite(bytes, name);
  if (!fileset) fileset = await FilesetResolver.forVisionTasks(WASM_DIR);
  try {
    segmenter = await ImageSegmenter.createFromOptions(fileset, {
      baseOptions: { modelAssetBuffer: bytes, delegate: DELEGATE },
      runningMode: 'IMAGE',
      outputCategoryMask: true,
      outputConfidenceMasks: false,
    });
  } catch (err) {
    throw new Error(`MediaPipe's ImageSegmenter could not load ${name} (does it carry the TFLite Metadata `
      + `that convert/to_tflite.py writes: normalisation, labels, segmenter metadata?):\n${err?.message ?? err}`);
  }
  labels = segmenter.getLabels() || [];
  showStatus(`Model ${name} loaded (${(bytes.length / 1024).toFixed(0)} KiB, ${labels.length} labels, `
    + `MediaPipe tasks-vision, ${DELEGATE === 'CPU' ? 'WASM CPU' : 'GPU (WebGL)'}). Pick an image, drop one, or start the webcam.`);
}

function loadModel(loader) {
  clearError();
  showStatus('Loading the model…');
  modelReady = (async () => {
    const { bytes, name } = await loader();
    await loadModelBytes(bytes, name);
  })();
  modelReady.catch((err) => {
    showStatus('No model loaded.');
    showError(err.message ?? String(err));
  });
  return modelReady;
}

async function fetchModel(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (err) {
    throw new Error(`Could not fetch the model ${url}: ${err.message}`);
  }
  if (!response.ok) {
    throw new Error(`Could not fetch the model ${url} (HTTP ${response.status}). `
      + 'Run `make web-demo` (it copies the newest runs/**/model_int8.tflite beside the page) or pick a .tflite above.');
  }
  return { bytes: new Uint8Array(await response.arrayBuffer()), name: url };
}

// ---- segmentation ------------------------------------------------------------------------------

const square = document.createElement('canvas');
const squareCtx = square.getContext('2d', { willReadFrequently: false });

// Class indices (Uint8Array, width*height) for a drawable source of the given size, under the letterbox contract.
function segmentSource(source, width, height) {
  if (!segmenter) throw new Error('No model loaded.');
  const side = Math.max(width, height);
  square.width = side;
  square.height = side;
  squareCtx.fillStyle = PAD_RGB;
  squareCtx.fillRect(0, 0, side, side);
  squareCtx.drawImage(source, 0, 0, width, height);
  const start = performance.now();
  const result = segmenter.segment(square);
  let full, mw, mh;
  try {
    const cm = result.categoryMask;
    if (!cm) throw new Error('MediaPipe returned no category mask.');
    full = cm.getAsUint8Array();
    mw = cm.width;
    mh = cm.height;
  } finally {
    result.close();
  }
  const ms = performance.now() - start;
  // The mask covers the square (MediaPipe returns it at the square's size: then this is a plain crop).
  const mask = new Uint8Array(width * height);
  const xs = new Int32Array(width);
  for (let x = 0; x < width; x++) xs[x] = Math.min(Math.floor((x + 0.5) * mw / side), mw - 1);
  for (let y = 0; y < height; y++) {
    const row = Math.min(Math.floor((y + 0.5) * mh / side), mh - 1) * mw;
    for (let x = 0; x < width; x++) mask[y * width + x] = full[row + xs[x]];
  }
  return { mask, ms };
}

// ---- drawing -----------------------------------------------------------------------------------

let shown = null; // {width, height, mask}

function displayScale(width, height) {
  const fit = Math.min(640 / width, 480 / height);
  return fit >= 1 ? Math.max(1, Math.floor(fit)) : fit;
}

function draw(source, width, height, mask) {
  const imageCanvas = $('image-canvas');
  const overlayCanvas = $('overlay-canvas');
  const scale = displayScale(width, height);
  for (const c of [imageCanvas, overlayCanvas]) {
    if (c.width !== width) c.width = width;
    if (c.height !== height) c.height = height;
    c.style.width = `${Math.round(width * scale)}px`;
    c.style.height = `${Math.round(height * scale)}px`;
  }
  imageCanvas.getContext('2d').drawImage(source, 0, 0, width, height);
  const octx = overlayCanvas.getContext('2d');
  const data = octx.createImageData(width, height);
  const px = data.data;
  for (let i = 0; i < mask.length; i++) {
    const k = mask[i];
    if (k === 0) continue; // background stays plain
    px[4 * i] = PALETTE[3 * k];
    px[4 * i + 1] = PALETTE[3 * k + 1];
    px[4 * i + 2] = PALETTE[3 * k + 2];
    px[4 * i + 3] = OVERLAY_ALPHA;
  }
  octx.putImageData(data, 0, 0);
  $('drop-hint').hidden = true;
  shown = { width, height, mask };
  drawLegend(mask);
}

function drawLegend(mask) {
  const counts = new Map();
  for (const k of mask) counts.set(k, (counts.get(k) || 0) + 1);
  const legend = $('legend');
  legend.replaceChildren();
  for (const [k, n] of [...counts.entries()].sort((a, b) => b[1] - a[1])) {
    const li = document.createElement('li');
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.background = k === 0 ? 'transparent' : colour(k);
    li.append(sw, `${labelName(k)} (${k}): ${(100 * n / mask.length).toFixed(1)} %`);
    legend.append(li);
  }
}

function showLatency(ms) {
  recentMs.push(ms);
  if (recentMs.length > 30) recentMs.shift();
  const sorted = [...recentMs].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  $('latency').textContent = `latency: ${ms.toFixed(1)} ms this frame, median ${median.toFixed(1)} ms over ${recentMs.length}`;
}

$('overlay-canvas').addEventListener('mousemove', (e) => {
  if (!shown) return;
  const r = e.currentTarget.getBoundingClientRect();
  const x = Math.min(shown.width - 1, Math.max(0, Math.floor((e.clientX - r.left) * shown.width / r.width)));
  const y = Math.min(shown.height - 1, Math.max(0, Math.floor((e.clientY - r.top) * shown.height / r.height)));
  const k = shown.mask[y * shown.width + x];
  $('hover').textContent = `under the cursor (${x}, ${y}): ${labelName(k)} (${k})`;
});

// ---- images ------------------------------------------------------------------------------------

async function decodeBlob(blob, name) {
  try {
    // No colour-space conversion: the pixels the model sees are the file's, as with OpenCV in Python.
    return await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch (err) {
    throw new Error(`Could not decode the image ${name}: ${err.message ?? err}`);
  }
}

async function segmentBitmap(bitmap) {
  await modelReady;
  const { width, height } = bitmap;
  const { mask, ms } = segmentSource(bitmap, width, height);
  draw(bitmap, width, height, mask);
  showLatency(ms);
  return { width, height, mask, ms };
}

async function segmentUrl(url) {
  let blob;
  try {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    blob = await response.blob();
  } catch (err) {
    throw new Error(`Could not fetch the image ${url.slice(0, 80)}: ${err.message ?? err}`);
  }
  const bitmap = await decodeBlob(blob, url.slice(0, 80));
  try {
    return await segmentBitmap(bitmap);
  } finally {
    bitmap.close();
  }
}

// The test hook: {width, height, mask (Array of class indices, row-major, image size), labels, ms}.
window.segmentImage = async (url) => {
  try {
    if (!modelReady) throw new Error('No model loaded.');
    await modelReady;
    const r = await segmentUrl(url);
    clearError();
    showStatus(`Segmented ${url.startsWith('data:') ? 'a data: URL' : url} (${r.width}x${r.height}) in ${r.ms.toFixed(1)} ms.`);
    return { width: r.width, height: r.height, mask: Array.from(r.mask), labels: [...labels], ms: r.ms };
  } catch (err) {
    showError(err.message ?? String(err));
    throw err;
  }
};

async function handleFile(file) {
  clearError();
  if (/\.tflite$/i.test(file.name)) {
    stopWebcam();
    return loadModel(async () => ({ bytes: new Uint8Array(await file.arrayBuffer()), name: file.name }));
  }
  try {
    stopWebcam();
    const bitmap = await decodeBlob(file, file.name);
    const r = await segmentBitmap(bitmap);
    bitmap.close();
    showStatus(`Segmented ${file.name} (${r.width}x${r.height}) in ${r.ms.toFixed(1)} ms.`);
  } catch (err) {
    showError(err.message ?? String(err));
  }
}

$('image-file').addEventListener('change', (e) => e.target.files[0] && handleFile(e.target.files[0]));
$('model-file').addEventListener('change', (e) => e.target.files[0] && handleFile(e.target.files[0]));
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  const file = e.dataTransfer.files[0];
  if (file) handleFile(file);
});

// ---- webcam ------------------------------------------------------------------------------------

function stopWebcam() {
  if (!webcam) return;
  webcam.running = false;
  for (const track of webcam.stream.getTracks()) track.stop();
  webcam = null;
  $('webcam').textContent = 'Start webcam';
}

async function startWebcam() {
  clearError();
  if (!navigator.mediaDevices?.getUserMedia) {
    showError('No webcam: this browser offers no camera API here (it needs https:// or http://127.0.0.1).');
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (err) {
    const why = err.name === 'NotAllowedError' ? 'permission was refused' : err.name === 'NotFoundError' ? 'no camera found' : err.message;
    showError(`No webcam: ${why} (${err.name}).`);
    return;
  }
  try {
    await modelReady;
  } catch {
    for (const track of stream.getTracks()) track.stop();
    return;
  }
  const video = $('video');
  video.srcObject = stream;
  await video.play();
  webcam = { stream, running: true };
  $('webcam').textContent = 'Stop webcam';
  const me = webcam;
  const frame = () => {
    if (!me.running) return;
    try {
      const { videoWidth: w, videoHeight: h } = video;
      if (w && h) {
        const { mask, ms } = segmentSource(video, w, h);
        draw(video, w, h, mask);
        showLatency(ms);
        showStatus(`Webcam ${w}x${h}`);
      }
    } catch (err) {
      showError(err.message ?? String(err));
      stopWebcam();
      return;
    }
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
}

$('webcam').addEventListener('click', () => (webcam ? stopWebcam() : startWebcam()));

// ---- start -------------------------------------------------------------------------------------

const modelUrl = params.get('model') || 'model.tflite';
window.demoReady = loadModel(() => fetchModel(modelUrl)).then(() => true, (err) => { throw err; });
window.demoReady.catch(() => {}); // shown on the page; tests await it themselves
