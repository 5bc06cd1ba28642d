#!/usr/bin/env node
// Golden descriptors of the LFW-MCS black box: face-api.js FaceRecognitionNet
// (@vladmandic/face-api 1.7.15, uint8-quantised weights in models/faceapi/) run by TF.js
// in node, on the PNGs made by make_inputs.py.
//
//   node tools/faceapi/golden.mjs [--backend wasm|cpu] [--inputs fixtures/faceapi/inputs]
//                                 [--out fixtures/faceapi/golden.json]
//                                 [--resized-out fixtures/faceapi/lfw_0_resized.f32]
//
// Each image goes in as face-api.js gets it from a decoded 8-bit image: a tf.tensor3d
// [H, W, 3] of int32 pixel values, handed to FaceRecognitionNet.computeFaceDescriptor (the
// same call as faceapi.computeFaceDescriptor). The descriptors written are face-api's own
// output. To help a reimplementation, the script also replays the network stage by stage
// with the same TF.js ops (checking that the replay reproduces face-api's output bit for
// bit) and records every stage's shape and summary statistics for lfw_0, plus lfw_0's
// 150x150 resized input.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';

import {
  REPO, faceapi, imageTensor, loadNet, parseArgs, readPngRgb, setBackend, tf, versions,
} from './common.mjs';

const args = parseArgs(process.argv.slice(2), {
  backend: 'wasm',
  inputs: path.join(REPO, 'fixtures', 'faceapi', 'inputs'),
  out: path.join(REPO, 'fixtures', 'faceapi', 'golden.json'),
  resized_out: path.join(REPO, 'fixtures', 'faceapi', 'lfw_0_resized.f32'),
  debug_case: 'lfw_0',
});

const PREPROCESSING = [
  'FaceRecognitionNet.forwardInput: input.toBatchTensor(150, true) -> cast float32;',
  'NetInput.toBatchTensor: per image, expandDims to [1,H,W,3]; padToSquare(img, isCenterImage=true)',
  '(zero padding of the short side, round(diff/2) zeros appended after the image and the rest',
  'prepended before it; a no-op for square inputs); if H or W != 150:',
  'tf.image.resizeBilinear(img, [150, 150], alignCorners=false, halfPixelCenters=false)',
  '(TF1 legacy sampling: src = dst * in/150, no half-pixel offset, ceil index clamped to in-1);',
  'stack -> [N,150,150,3] float32; normalize: subtract RGB means [122.782, 117.001, 104.298];',
  'div(255). Network: conv32_down (7x7/2 valid) + maxPool(3, 2, valid), residual blocks,',
  'global mean over H,W, matMul(fc [256,128]). No L2 normalisation of the 128-d output.',
].join(' ');

// ---- stage-by-stage replay of src/faceRecognitionNet/{FaceRecognitionNet,convLayer,residualLayer,scaleLayer}.ts
function convLayer(x, p, strides, withRelu, padding = 'same') {
  let out = tf.conv2d(x, p.conv.filters, strides, padding);
  out = tf.add(out, p.conv.bias);
  out = tf.add(tf.mul(out, p.scale.weights), p.scale.biases);
  return withRelu ? tf.relu(out) : out;
}
const conv = (x, p) => convLayer(x, p, [1, 1], true);
const convNoRelu = (x, p) => convLayer(x, p, [1, 1], false);
const convDown = (x, p) => convLayer(x, p, [2, 2], true, 'valid');
function residual(x, p) {
  let out = conv(x, p.conv1);
  out = convNoRelu(out, p.conv2);
  return tf.relu(tf.add(out, x));
}
function residualDown(x, p) {
  let out = convDown(x, p.conv1);
  out = convNoRelu(out, p.conv2);
  let pooled = tf.avgPool(x, 2, 2, 'valid');
  const zeros = tf.zeros(pooled.shape);
  const isPad = pooled.shape[3] !== out.shape[3];
  const isAdjustShape = pooled.shape[1] !== out.shape[1] || pooled.shape[2] !== out.shape[2];
  if (isAdjustShape) {
    const padShapeX = [...out.shape]; padShapeX[1] = 1;
    out = tf.concat([out, tf.zeros(padShapeX)], 1);
    const padShapeY = [...out.shape]; padShapeY[2] = 1;
    out = tf.concat([out, tf.zeros(padShapeY)], 2);
  }
  pooled = isPad ? tf.concat([pooled, zeros], 3) : pooled;
  return tf.relu(tf.add(pooled, out));
}

async function stats(t) {
  const v = await t.data();
  let s = 0; let s2 = 0; let mn = Infinity; let mx = -Infinity; let zeros = 0;
  for (const x of v) { s += x; s2 += x * x; if (x < mn) mn = x; if (x > mx) mx = x; if (x === 0) zeros++; }
  const mean = s / v.length;
  return {
    shape: t.shape,
    mean,
    std: Math.sqrt(Math.max(0, s2 / v.length - mean * mean)),
    min: mn,
    max: mx,
    zero_fraction: zeros / v.length,
    first16: Array.from(v.slice(0, 16)),
  };
}

/** Replays forwardInput on a NetInput, returning per-stage stats and the final [1,128] output. */
async function replay(net, netInput) {
  const p = net.params;
  const stages = [];
  const record = async (name, t) => { stages.push({ name, ...(await stats(t)) }); };
  const batch = tf.cast(netInput.toBatchTensor(150, true), 'float32');
  await record('input_resized (toBatchTensor(150), before mean subtraction)', batch);
  const normalized = faceapi.normalize(batch, [122.782, 117.001, 104.298]).div(255);
  await record('normalized ((x - mean_rgb) / 255)', normalized);
  let out = convDown(normalized, p.conv32_down);
  await record('conv32_down (7x7 stride 2 valid, +bias, scale, relu)', out);
  out = tf.maxPool(out, 3, 2, 'valid');
  await record('maxPool(3, 2, valid)', out);
  for (const name of ['conv32_1', 'conv32_2', 'conv32_3', 'conv64_down', 'conv64_1', 'conv64_2',
    'conv64_3', 'conv128_down', 'conv128_1', 'conv128_2', 'conv256_down', 'conv256_1',
    'conv256_2', 'conv256_down_out']) {
    out = name.includes('down') ? residualDown(out, p[name]) : residual(out, p[name]);
    await record(`${name} (${name.includes('down') ? 'residualDown' : 'residual'})`, out);
  }
  const globalAvg = out.mean([1, 2]);
  await record('global mean over H, W', globalAvg);
  const fc = tf.matMul(globalAvg, p.fc);
  await record('fc (matMul with [256,128]) = descriptor', fc);
  return { stages, descriptor: await fc.data(), resized: await batch.data() };
}

function l2(v) { return Math.sqrt(v.reduce((s, x) => s + x * x, 0)); }
function maxAbsDiff(a, b) { let m = 0; for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i])); return m; }

async function main() {
  const backendInfo = await setBackend(args.backend);
  const { net, sha } = await loadNet();
  const index = JSON.parse(readFileSync(path.join(args.inputs, 'index.json'), 'utf8'));

  const cases = [];
  const singles = new Map();
  for (const entry of index) {
    const img = readPngRgb(path.join(path.dirname(args.inputs), entry.file));
    if (img.width !== entry.width || img.height !== entry.height) throw new Error(`${entry.file}: size mismatch with index.json`);
    const t = imageTensor(img, 'int32');
    const d = await net.computeFaceDescriptor(t); // Float32Array(128)
    const tf32 = imageTensor(img, 'float32');
    const dFloat = await net.computeFaceDescriptor(tf32);
    t.dispose(); tf32.dispose();
    singles.set(entry.file, { img, d });
    cases.push({
      file: entry.file,
      width: img.width,
      height: img.height,
      description: entry.description,
      norm: l2(d),
      int32_vs_float32_input_max_abs_diff: maxAbsDiff(d, dFloat),
      descriptor: Array.from(d),
    });
    console.log(`${entry.file.padEnd(26)} ${img.width}x${img.height}  |d| = ${l2(d).toFixed(6)}  d[0..3] = ${Array.from(d.slice(0, 3)).map((x) => x.toFixed(6)).join(', ')}`);
  }

  // Batch consistency: all 112x112 cases in one batch (face-api stacks them into [N,150,150,3]).
  const batchFiles = cases.filter((c) => c.width === 112 && c.height === 112).map((c) => c.file);
  const batchTensors = batchFiles.map((f) => imageTensor(singles.get(f).img, 'int32'));
  const batchOut = await net.computeFaceDescriptor(batchTensors);
  batchTensors.forEach((t) => t.dispose());
  const batchDiff = Math.max(...batchFiles.map((f, i) => maxAbsDiff(batchOut[i], singles.get(f).d)));

  // Distances between the 8 LFW identities (all different people) for orientation.
  const lfw = cases.filter((c) => c.file.includes('/lfw_'));
  const dists = [];
  for (let i = 0; i < lfw.length; i++) for (let j = i + 1; j < lfw.length; j++) {
    dists.push(Math.sqrt(lfw[i].descriptor.reduce((s, x, k) => s + (x - lfw[j].descriptor[k]) ** 2, 0)));
  }

  // Stage-by-stage replay of the debug case.
  const dbg = singles.get(`inputs/${args.debug_case}.png`);
  const dt = imageTensor(dbg.img, 'int32');
  const { stages, descriptor, resized } = await replay(net, await faceapi.toNetInput(dt));
  dt.dispose();
  const replayDiff = maxAbsDiff(descriptor, dbg.d);
  if (replayDiff !== 0) console.warn(`warning: stage replay differs from face-api by ${replayDiff}`);
  mkdirSync(path.dirname(args.resized_out), { recursive: true });
  const le = Buffer.alloc(resized.length * 4);
  resized.forEach((x, i) => le.writeFloatLE(x, 4 * i));
  writeFileSync(args.resized_out, le);

  const golden = {
    face_api_version: versions.face_api,
    tfjs_version: versions.tfjs,
    tfjs_backend_wasm_version: versions.tfjs_backend_wasm,
    node_version: versions.node,
    backend: backendInfo.backend,
    backend_info: backendInfo,
    model: 'models/faceapi/face_recognition_model.bin',
    model_sha256: sha,
    input: 'tf.tensor3d(int32 RGB pixel values, [H, W, 3]) -> FaceRecognitionNet.computeFaceDescriptor',
    preprocessing: PREPROCESSING,
    mean_rgb: [122.782, 117.001, 104.298],
    resize: { op: 'tf.image.resizeBilinear', size: [150, 150], alignCorners: false, halfPixelCenters: false, skipped_when_input_is_150x150: true },
    l2_normalised: false,
    generated_by: 'tools/faceapi/golden.mjs (inputs by tools/faceapi/make_inputs.py)',
    checks: {
      int32_vs_float32_input_max_abs_diff: Math.max(...cases.map((c) => c.int32_vs_float32_input_max_abs_diff)),
      batch_vs_single_max_abs_diff: batchDiff,
      batch_files: batchFiles,
      stage_replay_vs_faceapi_max_abs_diff: replayDiff,
      lfw_pairwise_l2: { min: Math.min(...dists), mean: dists.reduce((a, b) => a + b, 0) / dists.length, max: Math.max(...dists) },
    },
    debug_case: {
      file: `inputs/${args.debug_case}.png`,
      resized_input: {
        file: path.relative(path.dirname(args.out), args.resized_out),
        format: 'raw little-endian float32, HWC, shape [150, 150, 3], RGB in 0..255, before mean subtraction (face-api toBatchTensor(150) output)',
        bytes: le.length,
      },
    },
    stage_shapes: stages.map((s) => ({ name: s.name, shape: s.shape })),
    stage_stats: stages,
    cases,
  };
  mkdirSync(path.dirname(args.out), { recursive: true });
  writeFileSync(args.out, `${JSON.stringify(golden, null, 1)}\n`);
  console.log(`\nbackend ${backendInfo.backend}; batch vs single max |diff| ${batchDiff}; int32 vs float32 input max |diff| ${golden.checks.int32_vs_float32_input_max_abs_diff}; replay diff ${replayDiff}`);
  console.log(`LFW pairwise L2 (8 different people): min ${golden.checks.lfw_pairwise_l2.min.toFixed(4)} mean ${golden.checks.lfw_pairwise_l2.mean.toFixed(4)} max ${golden.checks.lfw_pairwise_l2.max.toFixed(4)}`);
  console.log(`wrote ${args.out} and ${args.resized_out}`);
}

main().catch((e) => { console.error(e); process.exit(1); });
