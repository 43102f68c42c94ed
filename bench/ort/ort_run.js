#!/usr/bin/env node
// Runs an .onnx file once with ONNX Runtime (onnxruntime-node, CPU) on .npy inputs and writes each
// output as OUTPUT_DIR/<name>.npy -- the counterpart of `kiln run`, to check that both agree.
// Usage: node bench/ort/ort_run.js MODEL.onnx --input NAME=FILE.npy ... [--output-dir D]
//          [--compare DIR [--tol 1e-4]]   compare with DIR/<name>.npy (e.g. kiln run's), exit 1 above tol
//        node bench/ort/ort_run.js MODEL.onnx --make-inputs DIR [--batch N] [--int-high K] [--seed S]
//          writes DIR/<input>.npy: float inputs N(0, 1), integer inputs uniform in [0, K) (default 1)
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');
const { readNpy, writeNpy } = require('./npy.js');

function parseArgs(argv) {
  const a = { file: null, inputs: {}, outputDir: '.', compare: null, tol: 1e-4, makeInputs: null, batch: 1,
              intHigh: 1, seed: 7 };
  for (let i = 0; i < argv.length; ++i) {
    const k = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${k} needs a value`);
      return argv[++i];
    };
    if (k === '--input') {
      const [name, file] = next().split('=');
      if (!file) throw new Error('--input: NAME=FILE.npy');
      a.inputs[name] = file;
    } else if (k === '--output-dir') a.outputDir = next();
    else if (k === '--compare') a.compare = next();
    else if (k === '--tol') a.tol = Number(next());
    else if (k === '--make-inputs') a.makeInputs = next();
    else if (k === '--batch') a.batch = Number(next());
    else if (k === '--int-high') a.intHigh = Number(next());
    else if (k === '--seed') a.seed = Number(next());
    else if (k.startsWith('--')) throw new Error(`unknown option ${k}`);
    else a.file = k;
  }
  if (!a.file) throw new Error('usage: ort_run.js MODEL.onnx (--input NAME=FILE.npy ... | --make-inputs DIR)');
  return a;
}

// mulberry32: reproducible uniform [0, 1) samples.
function uniformSampler(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function makeInputs(session, a) {
  const u = uniformSampler(a.seed);
  fs.mkdirSync(a.makeInputs, { recursive: true });
  for (const m of session.inputMetadata) {
    const shape = m.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : a.batch));
    const n = shape.reduce((x, y) => x * y, 1);
    let data;
    if (m.type === 'float32') {
      data = new Float32Array(n);
      for (let i = 0; i < n; ++i) data[i] = Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
    } else if (m.type === 'int64') {
      data = new BigInt64Array(n);
      for (let i = 0; i < n; ++i) data[i] = BigInt(Math.floor(u() * a.intHigh));
    } else {
      throw new Error(`input ${m.name}: type ${m.type} not supported by --make-inputs`);
    }
    const file = path.join(a.makeInputs, `${m.name}.npy`);
    writeNpy(file, data, shape);
    console.log(JSON.stringify({ input: m.name, file, type: m.type, shape }));
  }
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const session = await ort.InferenceSession.create(a.file, { intraOpNumThreads: 1, interOpNumThreads: 1,
    executionMode: 'sequential', graphOptimizationLevel: 'all', logSeverityLevel: 3 });
  if (a.makeInputs) return makeInputs(session, a);
  const feeds = {};
  for (const name of session.inputNames) {
    if (!(name in a.inputs)) throw new Error(`input '${name}' missing (--input ${name}=FILE.npy)`);
    const x = readNpy(a.inputs[name]);
    feeds[name] = new ort.Tensor(x.type, x.data, x.shape);
  }
  const out = await session.run(feeds);
  fs.mkdirSync(a.outputDir, { recursive: true });
  let ok = true;
  for (const name of session.outputNames) {
    const t = out[name];
    writeNpy(path.join(a.outputDir, `${name}.npy`), t.data, t.dims);
    const rec = { output: name, shape: t.dims, type: t.type };
    if (a.compare) {
      const ref = readNpy(path.join(a.compare, `${name}.npy`));
      if (ref.shape.join(',') !== t.dims.join(',')) throw new Error(`${name}: shape ${ref.shape} vs ${t.dims}`);
      let maxAbs = 0;
      let maxRef = 0;
      for (let i = 0; i < t.data.length; ++i) {
        const d = Math.abs(Number(t.data[i]) - Number(ref.data[i]));
        maxAbs = Number.isNaN(d) ? Infinity : Math.max(maxAbs, d);
        maxRef = Math.max(maxRef, Math.abs(Number(ref.data[i])));
      }
      Object.assign(rec, { max_abs_diff: maxAbs, max_abs_value: maxRef, tol: a.tol, agree: maxAbs < a.tol });
      ok = ok && maxAbs < a.tol;
    }
    console.log(JSON.stringify(rec));
  }
  if (!ok) process.exitCode = 1;
}

main().catch((e) => { console.error(`ort_run: ${e.message}`); process.exit(1); });
