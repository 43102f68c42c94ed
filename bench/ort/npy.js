// Minimal .npy (format 1.0/2.0) reader and writer for the dtypes the ONNX Runtime scripts need:
// little-endian float32, float64, int32, int64, C order.
'use strict';
const fs = require('fs');

const kDescr = { '<f4': ['float32', Float32Array], '<f8': ['float64', Float64Array],
                 '<i4': ['int32', Int32Array], '<i8': ['int64', BigInt64Array] };

// Returns { type (ORT tensor type), data (typed array), shape (array of numbers) }.
function readNpy(path) {
  const buf = fs.readFileSync(path);
  if (buf.toString('latin1', 0, 6) !== '\x93NUMPY') throw new Error(`${path}: not an .npy file`);
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', start, start + hlen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  if (/'fortran_order':\s*True/.test(header)) throw new Error(`${path}: Fortran order not supported`);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',').map((s) => s.trim())
    .filter((s) => s.length > 0).map(Number);
  const kind = kDescr[descr];
  if (!kind) throw new Error(`${path}: dtype ${descr} not supported`);
  const [type, Arr] = kind;
  const n = shape.reduce((a, b) => a * b, 1);
  const off = start + hlen;
  const data = new Arr(n);  // copy: the file's data offset need not be aligned for the typed array
  Buffer.from(data.buffer).set(buf.subarray(off, off + n * Arr.BYTES_PER_ELEMENT));
  return { type, data, shape };
}

function writeNpy(path, typedArray, shape) {
  const descr = Object.keys(kDescr).find((k) => typedArray instanceof kDescr[k][1]);
  if (!descr) throw new Error(`writeNpy: unsupported array type ${typedArray.constructor.name}`);
  const shp = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shp}, }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += ' '.repeat(pad % 64) + '\n';
  const pre = Buffer.alloc(10);
  pre.write('\x93NUMPY', 0, 'latin1');
  pre[6] = 1; pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  const body = Buffer.from(typedArray.buffer, typedArray.byteOffset, typedArray.byteLength);
  fs.writeFileSync(path, Buffer.concat([pre, Buffer.from(header, 'latin1'), body]));
}

module.exports = { readNpy, writeNpy };
