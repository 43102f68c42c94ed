#!/usr/bin/env node
// ONNX Runtime (onnxruntime-node, CPU) inference latency of an .onnx file, the counterpart of
// `kiln bench infer FILE.onnx`: one JSON line with p50/p90/p99 per run.
// Usage: node bench/ort/ort_bench.js FILE.onnx [--batch N] [--threads T] [--steps S] [--warmup W]
//        [--api native|session]
// Symbolic input dims take the batch size; float inputs are N(0, 1), integer inputs zeros.
// --api native (default) times the binding's synchronous run, the native call that the public
// `await session.run(feeds)` (--api session) makes after a setImmediate hop (about 10 us more).
'use strict';
const path = require('path');
const ort = require('onnxruntime-node');
const { binding, initOrt } = require('onnxruntime-node/dist/binding');  // pinned 1.30.x layout

// ONNX TensorProto element types as the binding reports them -> ORT tensor type names.
const kTypes = { 1: 'float32', 2: 'uint8', 3: 'int8', 6: 'int32', 7: 'int64', 9: 'bool', 11: 'float64' };

function parseArgs(argv) {
  const a = { file: null, batch: 1, threads: 1, steps: 200, warmup: 20, seed: 1, api: 'native' };
  for (let i = 0; i < argv.length; ++i) {
    const k = argv[i];
    if (k === '--api') {
      a.api = argv[++i];
      if (a.api !== 'native' && a.api !== 'session') throw new Error('--api: native or session');
    } else if (k.startsWith('--')) {
      const v = Number(argv[++i]);
      const key = k.slice(2);
      if (!(key in a) || key === 'file' || key === 'api' || !Number.isInteger(v)) throw new Error(`bad option ${k}`);
      a[key] = v;
    } else {
      a.file = k;
    }
  }
  if (!a.file) throw new Error('usage: ort_bench.js FILE.onnx [--batch N] [--threads T] [--steps S] [--warmup W]');
  if (a.steps <= 0 || a.threads <= 0 || a.batch <= 0 || a.warmup < 0) throw new Error('steps, threads, batch must be positive');
  return a;
}

// mulberry32 + Box-Muller: reproducible N(0, 1) samples.
function normalSampler(seed) {
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

// meta: { name, type (ORT type name), shape (numbers; symbolic dims as strings or -1) }.
function makeInput(meta, batch, normal) {
  const shape = meta.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : batch));
  const n = shape.reduce((x, y) => x * y, 1);
  const arrays = { float32: Float32Array, float64: Float64Array, int64: BigInt64Array, int32: Int32Array,
                   int8: Int8Array, uint8: Uint8Array, bool: Uint8Array };
  const Arr = arrays[meta.type];
  if (!Arr) throw new Error(`input ${meta.name}: type ${meta.type} not supported`);
  const data = new Arr(n);  // zeros
  if (meta.type === 'float32' || meta.type === 'float64') for (let i = 0; i < n; ++i) data[i] = normal();
  return new ort.Tensor(meta.type, data, shape);
}

function sessionOptions(threads) {
  return { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential',
           graphOptimizationLevel: 'all', executionProviders: ['cpu'], logSeverityLevel: 3 };
}

// Returns { inputs: [meta], run: async (feeds) => outputs } for the chosen API.
async function openSession(file, threads, api) {
  if (api === 'session') {
    const session = await ort.InferenceSession.create(file, sessionOptions(threads));
    return { inputs: session.inputMetadata, run: (feeds) => session.run(feeds) };
  }
  initOrt();
  const native = new binding.InferenceSession();
  native.loadModel(file, sessionOptions(threads));
  const inputs = native.inputMetadata.map((m) => {
    if (!(m.type in kTypes)) throw new Error(`input ${m.name}: ONNX type ${m.type} not supported`);
    return { name: m.name, type: kTypes[m.type], shape: m.shape };
  });
  const fetches = {};
  for (const m of native.outputMetadata) fetches[m.name] = null;
  return { inputs, run: (feeds) => native.run(feeds, fetches, {}) };
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const session = await openSession(a.file, a.threads, a.api);
  const normal = normalSampler(a.seed);
  const feeds = {};
  for (const meta of session.inputs) feeds[meta.name] = makeInput(meta, a.batch, normal);
  const ms = [];
  for (let s = 0; s < a.warmup + a.steps; ++s) {
    const t0 = process.hrtime.bigint();
    const r = session.run(feeds);
    if (r instanceof Promise) await r;  // session API only: native returns the outputs directly
    const t = Number(process.hrtime.bigint() - t0) / 1e6;
    if (s >= a.warmup) ms.push(t);
  }
  ms.sort((x, y) => x - y);
  // Same percentile rule as kiln bench infer (nearest rank on (n - 1)).
  const pct = (q) => ms[Math.min(ms.length - 1, Math.floor(q * (ms.length - 1) + 0.5))];
  const mean = ms.reduce((x, y) => x + y, 0) / ms.length;
  console.log(JSON.stringify({
    engine: 'onnxruntime', ort_version: ort.env.versions.node, api: a.api, model: path.resolve(a.file), batch: a.batch,
    threads: a.threads, steps: a.steps, latency_ms_p50: pct(0.5), latency_ms_p90: pct(0.9),
    latency_ms_p99: pct(0.99), latency_ms_mean: mean, rate: a.batch / (pct(0.5) / 1000), unit: 'samples/s',
  }));
}

main().catch((e) => { console.error(`ort_bench: ${e.message}`); process.exit(1); });
