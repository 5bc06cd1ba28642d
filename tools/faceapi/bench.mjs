#!/usr/bin/env node
// Throughput of the LFW-MCS black box, face-api.js FaceRecognitionNet under TF.js in node.
//
//   node tools/faceapi/bench.mjs                      # all configurations, markdown table
//   node tools/faceapi/bench.mjs --backend wasm --threads 1 --batches 1,16,32 --json
//
// Timed: one faceRecognitionNet.computeFaceDescriptor call on a batch of 112x112 int32
// tensors (the LFW-MCS crops of fixtures/faceapi/inputs), i.e. face-api's preprocessing
// (resize to 150x150, mean subtraction) + network + reading the descriptors back. Reported:
// median over --runs timed calls after --warmup untimed ones, in ms per image.
//
// Without --backend, every configuration runs in its own child process (a TF.js backend
// cannot be re-initialised in one process): wasm with 1 thread, wasm with --threads 2 (the
// multithreaded wasm build, which TF.js 4.22 does not support in node: the row says why it
// failed), and the pure-JS cpu backend at batch 1 (--cpu-runs).
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  REPO, imageTensor, loadNet, median, parseArgs, readPngRgb, setBackend, tf, versions,
} from './common.mjs';

const args = parseArgs(process.argv.slice(2), {
  backend: '',
  threads: 0,
  batches: '1,16,32',
  warmup: 2,
  runs: 7,
  cpu_runs: 3,
  json: false,
});

async function benchOne() {
  const info = await setBackend(args.backend, args.threads);
  const { net } = await loadNet();
  const imgs = [...Array(8).keys()].map((k) => readPngRgb(path.join(REPO, 'fixtures', 'faceapi', 'inputs', `lfw_${k}.png`)));
  const rows = [];
  for (const b of args.batches.split(',').map(Number)) {
    const tensors = [...Array(b).keys()].map((i) => imageTensor(imgs[i % imgs.length]));
    const input = b === 1 ? tensors[0] : tensors;
    const times = [];
    for (let r = 0; r < args.warmup + args.runs; r++) {
      const t0 = process.hrtime.bigint();
      const out = await net.computeFaceDescriptor(input);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if ((b === 1 ? 1 : out.length) !== b) throw new Error('wrong number of descriptors');
      if (r >= args.warmup) times.push(ms);
    }
    tensors.forEach((t) => t.dispose());
    const med = median(times);
    rows.push({ batch: b, runs: times.length, ms_per_call_median: med, ms_per_image: med / b, ms_per_image_min: Math.min(...times) / b, images_per_s: (1000 * b) / med });
  }
  return { ...info, tensors_alive: tf.memory().numTensors, rows };
}

function table(results) {
  const lines = [
    `face-api.js ${versions.face_api}, TF.js ${versions.tfjs}, node ${versions.node}; ${os.cpus().length} CPUs (${os.cpus()[0].model.trim()}); 112x112 int32 input, computeFaceDescriptor; load average at the end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`,
    '',
    '| backend | threads | batch | ms/image (median) | ms/image (min) | images/s | timed runs |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of results) {
    if (r.error) {
      lines.push(`| ${r.label} | ${r.threads} | - | not available: ${r.error.replace(/\|/g, '/').slice(0, 160)} | | | |`);
      continue;
    }
    for (const row of r.rows) {
      lines.push(`| ${r.backend}${r.wasm_simd ? ' (simd)' : ''} | ${r.backend === 'wasm' ? r.wasm_threads : 1} | ${row.batch} | ${row.ms_per_image.toFixed(1)} | ${row.ms_per_image_min.toFixed(1)} | ${row.images_per_s.toFixed(1)} | ${row.runs} |`);
    }
  }
  return lines.join('\n');
}

async function main() {
  if (args.backend) {
    const res = await benchOne();
    if (args.json) console.log(JSON.stringify(res));
    else console.log(table([res]));
    return;
  }
  const self = fileURLToPath(import.meta.url);
  const configs = [
    { label: 'wasm', threads: 1, argv: ['--backend', 'wasm', '--threads', '1', '--batches', args.batches, '--runs', String(args.runs), '--warmup', String(args.warmup)] },
    { label: 'wasm', threads: 2, argv: ['--backend', 'wasm', '--threads', '2', '--batches', args.batches, '--runs', String(args.runs), '--warmup', String(args.warmup)] },
    { label: 'cpu', threads: 1, argv: ['--backend', 'cpu', '--batches', '1', '--runs', String(args.cpu_runs), '--warmup', '1'] },
  ];
  const results = [];
  for (const c of configs) {
    try {
      const out = execFileSync(process.execPath, [self, ...c.argv, '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      results.push(JSON.parse(out.trim().split('\n').pop()));
    } catch (e) {
      const msg = `${e.stderr || e.message}`.split('\n').find((l) => /Error|failed/.test(l)) || 'failed';
      results.push({ label: c.label, threads: c.threads, error: msg.trim() });
    }
    console.error(`done: ${c.label} threads ${c.threads}`);
  }
  if (args.json) console.log(JSON.stringify(results, null, 1));
  else console.log(table(results));
}

main().catch((e) => { console.error(e); process.exit(1); });
