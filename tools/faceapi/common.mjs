// Shared helpers for golden.mjs and bench.mjs: load face-api.js (the node-wasm bundle of
// @vladmandic/face-api, which brings @tensorflow/tfjs + @tensorflow/tfjs-backend-wasm),
// pick a TF.js backend, load FaceRecognitionNet from models/faceapi/ and read PNGs.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { PNG } from 'pngjs';

const require = createRequire(import.meta.url);

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..');
export const MODEL_DIR = path.join(REPO, 'models', 'faceapi');
export const MODEL_BIN = 'face_recognition_model.bin';
export const MODEL_SHA256 = 'b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589';

// The same bundle face-api.js's README tells node users with the wasm backend to load.
export const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
export const { tf } = faceapi;
const wasm = require('@tensorflow/tfjs-backend-wasm');

export const versions = {
  face_api: faceapi.version,
  tfjs: tf.version.tfjs,
  tfjs_core: tf.version_core,
  tfjs_backend_wasm: wasm.version_wasm,
  node: process.versions.node,
};

/** Parse `--key value` / `--flag` arguments into an object. */
export function parseArgs(argv, defaults) {
  const out = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const key = a.slice(2).replace(/-/g, '_');
    if (!(key in defaults)) throw new Error(`unknown option ${a}; known: ${Object.keys(defaults).map((k) => `--${k.replace(/_/g, '-')}`).join(' ')}`);
    if (typeof defaults[key] === 'boolean') out[key] = true;
    else {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      out[key] = typeof defaults[key] === 'number' ? Number(v) : v;
    }
  }
  return out;
}

/**
 * Select the TF.js backend. `wasm` is the XNNPACK/SIMD WebAssembly backend; in node it is
 * always single-threaded unless `threads` > 1 forces the (node-unsupported upstream)
 * multithread flag on. `cpu` is the pure-JS reference backend.
 */
export async function setBackend(name, threads = 0) {
  if (name === 'wasm') {
    wasm.setWasmPaths(`${path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm'))}/`);
    if (threads > 0) wasm.setThreadsCount(threads);
    if (threads > 1) tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  } else if (name !== 'cpu') {
    throw new Error(`unknown backend '${name}': use wasm or cpu`);
  }
  const ok = await tf.setBackend(name);
  if (!ok) throw new Error(`tf.setBackend('${name}') failed`);
  await tf.ready();
  const info = { backend: tf.getBackend() };
  if (name === 'wasm') {
    info.wasm_simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
    info.wasm_multithread = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
    info.wasm_threads = wasm.getThreadsCount();
  }
  return info;
}

export function sha256File(p) {
  return createHash('sha256').update(readFileSync(p)).digest('hex');
}

/** Load FaceRecognitionNet exactly as face-api.js does in node (NeuralNetwork.loadFromDisk). */
export async function loadNet(modelDir = MODEL_DIR) {
  const sha = sha256File(path.join(modelDir, MODEL_BIN));
  if (sha !== MODEL_SHA256) {
    throw new Error(`${path.join(modelDir, MODEL_BIN)}: sha256 ${sha}, expected ${MODEL_SHA256} (face-api 1.7.15)`);
  }
  const net = faceapi.nets.faceRecognitionNet;
  await net.loadFromDisk(modelDir);
  return { net, sha };
}

/** Decode a PNG into { width, height, rgb: Uint8Array (HWC, RGB) }. Alpha is dropped. */
export function readPngRgb(file) {
  const png = PNG.sync.read(readFileSync(file));
  const { width, height, data } = png; // pngjs always gives RGBA, 8 bit
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < width * height; i++, j += 4) {
    rgb[3 * i] = data[j];
    rgb[3 * i + 1] = data[j + 1];
    rgb[3 * i + 2] = data[j + 2];
  }
  return { width, height, rgb };
}

/** The tensor face-api.js gets from an 8-bit image: tf.tensor3d [H, W, 3], int32 by default. */
export function imageTensor(img, dtype = 'int32') {
  const values = dtype === 'int32' ? Int32Array.from(img.rgb) : Float32Array.from(img.rgb);
  return tf.tensor3d(values, [img.height, img.width, 3], dtype);
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
