#!/usr/bin/env node
// Descriptors of any PNGs from the LFW-MCS black box itself: face-api.js FaceRecognitionNet
// (@vladmandic/face-api 1.7.15, uint8-quantised weights in models/faceapi/, sha256 checked)
// run by TF.js in node. The independent half of tools/score_reference.py.
//
//   node tools/faceapi/describe.mjs [--list FILE|-] [--out FILE] [--backend wasm|cpu] [PNG ...]
//
// Images come from argv and/or --list (one path a line, `-` for stdin; blank lines skipped).
// Output: one JSON line per image, in input order, to --out or stdout:
//   {"path": "<as given>", "descriptor": [128 numbers]}
// Each number is face-api's float32 value written exactly (JSON of the float64 it widens to).
// Progress and versions go to stderr.
//
// Every image goes in exactly as golden.mjs gives it: a tf.tensor3d [H, W, 3] of int32 RGB
// pixel values, one image a call to FaceRecognitionNet.computeFaceDescriptor (for a square
// input face-api.js resizes bilinearly to 150x150, subtracts the RGB means, divides by 255).
import { createWriteStream, readFileSync } from 'node:fs';

import { imageTensor, loadNet, readPngRgb, setBackend, versions } from './common.mjs';

const USAGE = 'usage: node tools/faceapi/describe.mjs [--list FILE|-] [--out FILE] [--backend wasm|cpu] [PNG ...]';

function parse(argv) {
  const a = { list: null, out: null, backend: 'wasm', paths: [] };
  for (let i = 0; i < argv.length; i++) {
    const x = argv[i];
    if (x === '--help' || x === '-h') { console.log(USAGE); process.exit(0); }
    if (x === '--list' || x === '--out' || x === '--backend') {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${x} needs a value\n${USAGE}`);
      a[x.slice(2)] = v;
    } else if (x.startsWith('--')) {
      throw new Error(`unknown option ${x}\n${USAGE}`);
    } else {
      a.paths.push(x);
    }
  }
  if (a.list !== null) {
    const text = readFileSync(a.list === '-' ? 0 : a.list, 'utf8');
    a.paths.push(...text.split(/\r?\n/).filter((l) => l.trim() !== ''));
  }
  if (a.paths.length === 0) throw new Error(`no images given\n${USAGE}`);
  return a;
}

async function main() {
  const args = parse(process.argv.slice(2));
  const backend = await setBackend(args.backend);
  const { net, sha } = await loadNet();
  console.error(`describe.mjs: face-api ${versions.face_api}, tfjs ${versions.tfjs}, backend ${JSON.stringify(backend)}, model sha256 ${sha}, ${args.paths.length} images`);

  const out = args.out ? createWriteStream(args.out) : process.stdout;
  let outError = null;
  out.on('error', (e) => { outError = e; });
  const write = (s) => new Promise((resolve, reject) => {
    if (outError) reject(outError);
    else if (out.write(s)) resolve();
    else out.once('drain', () => (outError ? reject(outError) : resolve()));
  });
  const start = Date.now();
  for (let i = 0; i < args.paths.length; i++) {
    const p = args.paths[i];
    let img;
    try {
      img = readPngRgb(p);
    } catch (e) {
      throw new Error(`${p}: cannot read as PNG: ${e.message}`);
    }
    const t = imageTensor(img, 'int32');
    const d = await net.computeFaceDescriptor(t); // Float32Array(128)
    t.dispose();
    if (d.length !== 128) throw new Error(`${p}: descriptor of length ${d.length}, expected 128`);
    await write(`${JSON.stringify({ path: p, descriptor: Array.from(d) })}\n`);
    if ((i + 1) % 100 === 0) console.error(`describe.mjs: ${i + 1}/${args.paths.length}`);
  }
  if (args.out) await new Promise((resolve) => { out.end(resolve); });
  if (outError) throw new Error(`writing ${args.out ?? 'stdout'}: ${outError.message}`);
  const s = (Date.now() - start) / 1000;
  console.error(`describe.mjs: ${args.paths.length} images in ${s.toFixed(1)} s (${(1000 * s / args.paths.length).toFixed(1)} ms/image)`);
}

main().catch((e) => { console.error(`describe.mjs: error: ${e.message}`); process.exit(1); });
