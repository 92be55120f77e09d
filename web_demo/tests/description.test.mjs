// web_demo/description.mjs: the model description read out of .tflite files and checked against the
// shared schema ksac_runtime/model_description.schema.json.
//
//   node --test web_demo/tests/description.test.mjs        (from the repository root; needs `npm ci` in web_demo)
//
// KSAC_TFLITE=FILE.tflite adds the description of a real export (tests/test_description_schema_js.py
// exports a tiny model and passes it); without it that one test is skipped, saying so. The other tests
// build small TFLite-shaped flatbuffers here, so they need no Python.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  DESCRIPTION_VERSION, METADATA_NAME, descriptionVersion, readDescription, upgradeDescription, validateDescription,
} from '../description.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SCHEMA = JSON.parse(readFileSync(path.join(ROOT, 'ksac_runtime', 'model_description.schema.json'), 'utf8'));
const GOLDEN = path.join(ROOT, 'android_demo', 'core', 'src', 'test', 'resources', 'golden', 'golden.json');

/** A version-2 description as the exporter writes it into a .tflite file. */
function v2() {
  return {
    version: 2, name: 'mobilenetv2_ksac', backbone: 'mobilenetv2', head: 'ksac', decoder: false, rates: [6, 12, 18],
    output_stride: 16, input_size: [65, 97], num_classes: 3, label_names: ['background', 'cat', 'dog'], width: 0.35,
    head_filters: 16, normalization: { mean: [127.5, 127.5, 127.5], std: [127.5, 127.5, 127.5] },
    preprocessing: { resize: 'letterbox', interpolation: 'bilinear_half_pixel', anchor: 'top_left', pad: 'mean' },
    data: 'synthetic', precision: 'int8', output: 'logits', exporter: 'ksac-aware',
  };
}

// ---- a TFLite-shaped flatbuffer, written front to back (every uoffset points forward, as it must) ----

class Builder {
  constructor() {
    this.bytes = new Uint8Array(1 << 16);
    this.view = new DataView(this.bytes.buffer);
    this.length = 0;
  }

  alloc(size, align = 4) {
    this.length = Math.ceil(this.length / align) * align;
    const pos = this.length;
    this.length += size;
    return pos;
  }

  u16(pos, v) { this.view.setUint16(pos, v, true); }
  u32(pos, v) { this.view.setUint32(pos, v, true); }
  u64(pos, v) { this.view.setBigUint64(pos, BigInt(v), true); }
  /** A uoffset at `pos` to `target` (after it). */
  ref(pos, target) { assert.ok(target > pos); this.u32(pos, target - pos); }

  /** A table with fields of the given kinds by field id ('u32', 'u64', 'ref' or null = absent), its vtable
   *  just before it; returns the table's position and each present field's. */
  table(kinds) {
    const vtable = this.alloc(4 + 2 * kinds.length, 2);
    const start = this.alloc(0, 8);
    let end = start + 4; // after the soffset to the vtable
    const at = kinds.map((kind) => {
      if (kind === null) return null;
      const size = kind === 'u64' ? 8 : 4;
      end = Math.ceil(end / size) * size;
      end += size;
      return end - size;
    });
    this.length = end;
    this.u16(vtable, 4 + 2 * kinds.length);
    this.u16(vtable + 2, end - start);
    at.forEach((pos, i) => this.u16(vtable + 4 + 2 * i, pos === null ? 0 : pos - start));
    this.view.setInt32(start, start - vtable, true);
    return { start, at };
  }

  /** A vector of `count` uoffsets; returns the position of each. */
  refs(count) {
    const pos = this.alloc(4 + 4 * count);
    this.u32(pos, count);
    return Array.from({ length: count }, (_, i) => pos + 4 + 4 * i);
  }

  /** A [ubyte] vector (a string gets its NUL too); returns its position. */
  byteVector(data, nul = false) {
    const pos = this.alloc(4 + data.length + (nul ? 1 : 0));
    this.u32(pos, data.length);
    this.bytes.set(data, pos + 4);
    return pos;
  }
}

/**
 * The bytes of a flatbuffer with the TFLite file identifier and a Model table holding only `version`,
 * `buffers` and `metadata`: one entry per [name, payload]. `external`: payloads after the flatbuffer,
 * located by Buffer.offset/size, as in files over 2 GB.
 */
function tflite(entries, { external = false } = {}) {
  const b = new Builder();
  const encode = (text) => (typeof text === 'string' ? new TextEncoder().encode(text) : text);
  const root = b.alloc(8);
  b.bytes.set(encode('TFL3'), root + 4);
  // Model: version (0), operator_codes, subgraphs, description, buffers (4), metadata_buffer, metadata (6)
  const model = b.table(['u32', null, null, null, 'ref', null, 'ref']);
  b.ref(root, model.start);
  b.u32(model.at[0], 3);
  const buffers = b.refs(entries.length + 1);
  b.ref(model.at[4], buffers[0] - 4);
  b.ref(buffers[0], b.table([]).start); // buffer 0 is empty, as TFLite writes it
  const late = [];
  entries.forEach(([, payload], i) => {
    // Buffer: data (0), offset (1), size (2)
    const buffer = b.table(external ? [null, 'u64', 'u64'] : ['ref']);
    b.ref(buffers[i + 1], buffer.start);
    if (external) late.push([buffer.at[1], buffer.at[2], encode(payload)]);
    else b.ref(buffer.at[0], b.byteVector(encode(payload)));
  });
  const metadata = b.refs(entries.length);
  b.ref(model.at[6], metadata[0] - 4);
  entries.forEach(([name], i) => {
    // Metadata: name (0), buffer (1)
    const entry = b.table(['ref', 'u32']);
    b.ref(metadata[i], entry.start);
    b.u32(entry.at[1], i + 1);
    b.ref(entry.at[0], b.byteVector(encode(name), true));
  });
  for (const [offsetAt, sizeAt, payload] of late) {
    const pos = b.alloc(payload.length, 16);
    b.bytes.set(payload, pos);
    b.u64(offsetAt, pos);
    b.u64(sizeAt, payload.length);
  }
  return b.bytes.slice(0, b.length);
}

const OTHER_ENTRIES = [['min_runtime_version', '1.5.0\0\0\0\0\0\0\0\0\0\0\0'], ['TFLITE_METADATA', new Uint8Array([1, 2, 3])]];

// ---- reading ----

test('reads the description entry among the others', () => {
  const bytes = tflite([...OTHER_ENTRIES, [METADATA_NAME, JSON.stringify(v2())]]);
  assert.deepEqual(readDescription(bytes), v2());
  assert.deepEqual(readDescription(bytes.buffer), v2()); // an ArrayBuffer (File.arrayBuffer()) too
  // a Node Buffer that is a view into a larger pool
  const pooled = Buffer.concat([Buffer.alloc(7), Buffer.from(bytes)]).subarray(7);
  assert.deepEqual(readDescription(pooled), v2());
});

test('reads a description stored after the flatbuffer (offset/size buffers of files over 2 GB)', () => {
  const bytes = tflite([...OTHER_ENTRIES, [METADATA_NAME, JSON.stringify(v2())]], { external: true });
  assert.deepEqual(readDescription(bytes), v2());
});

test('clear errors: not a .tflite, damaged, no entry, not JSON, newer version', () => {
  const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0]);
  assert.throws(() => readDescription(png, 'photo.png'), { message: 'photo.png is not a TFLite model (no TFL3 flatbuffer identifier)' });
  assert.throws(() => readDescription(new Uint8Array(0)), /is empty, not a TFLite model/);
  const good = tflite([...OTHER_ENTRIES, [METADATA_NAME, JSON.stringify(v2())]]);
  assert.throws(() => readDescription(good.subarray(0, 60)), /is not a valid TFLite model: its flatbuffer is damaged or cut short/);
  assert.throws(() => readDescription(tflite(OTHER_ENTRIES), 'm.tflite'),
    { message: /^m\.tflite has no 'ksac_zoo_description' metadata; export it with convert\/to_tflite\.py/ });
  assert.throws(() => readDescription(tflite([[METADATA_NAME, '{"name": ']])), /its 'ksac_zoo_description' metadata is not JSON \(/);
  assert.throws(() => readDescription(tflite([[METADATA_NAME, '[1, 2]']])), /metadata is not a JSON object/);
  assert.throws(() => readDescription(tflite([[METADATA_NAME, JSON.stringify({ ...v2(), version: 3 })]])),
    { message: 'model description version 3 is newer than this app reads (up to 2)' });
});

// ---- versions ----

test('version 1 (no "version") and 2 are read, a newer or malformed one refused', () => {
  const { version, ...v1 } = v2();
  assert.equal(version, DESCRIPTION_VERSION);
  assert.equal(descriptionVersion(v1), 1);
  assert.deepEqual(readDescription(tflite([[METADATA_NAME, JSON.stringify(v1)]])), v1);
  assert.equal(descriptionVersion(v2()), 2);
  assert.throws(() => descriptionVersion({ ...v2(), version: 3 }), { message: 'model description version 3 is newer than this app reads (up to 2)' });
  assert.throws(() => descriptionVersion({ ...v2(), version: '2' }), /"version" must be a whole number from 1, got "2"/);
  assert.throws(() => descriptionVersion({ ...v2(), version: 1.5 }), /must be a whole number/);
  assert.throws(() => upgradeDescription({ ...v2(), version: 3 }), /version 3 is newer/);
  // version 1 upgrades to the schema's version 2
  assert.throws(() => validateDescription(v1, SCHEMA), /\$\.version: required field is missing/);
  validateDescription(upgradeDescription(v1), SCHEMA);
  assert.equal(Object.hasOwn(v1, 'version'), false, 'upgradeDescription leaves its argument alone');
});

test('the committed golden description (version 1, before "preprocessing") validates once upgraded', () => {
  const v1 = JSON.parse(readFileSync(GOLDEN, 'utf8')).metadata;
  assert.equal(descriptionVersion(v1), 1);
  const upgraded = upgradeDescription(v1);
  validateDescription(upgraded, SCHEMA);
  assert.deepEqual(upgraded.preprocessing, v2().preprocessing);
});

test('the description inside a real export (KSAC_TFLITE) validates', (t) => {
  const file = process.env.KSAC_TFLITE;
  if (!file) {
    // no .tflite is committed (.gitignore); tests/test_description_schema_js.py exports one and sets it
    t.skip('KSAC_TFLITE not set: run tests/test_description_schema_js.py, or KSAC_TFLITE=FILE.tflite node --test ...');
    return;
  }
  const description = readDescription(new Uint8Array(readFileSync(file)), file);
  const upgraded = upgradeDescription(description);
  validateDescription(upgraded, SCHEMA);
  assert.equal(upgraded.label_names.length, upgraded.num_classes);
  console.log(`KSAC_TFLITE ${path.basename(file)}: ${upgraded.name}, version ${descriptionVersion(description)} as stored,`
    + ` ${upgraded.num_classes} classes, ${upgraded.input_size.join('x')}, ${upgraded.precision ?? '?'}`);
});

// ---- the schema ----

test('bad descriptions are rejected, naming the path', () => {
  const cases = [
    [(d) => { delete d.name; }, '$.name: required field is missing'],
    [(d) => { delete d.normalization.std; }, '$.normalization.std: required field is missing'],
    [(d) => { d.width = '0.35'; }, '$.width: must be number, got string "0.35"'],
    [(d) => { d.num_classes = 2.5; }, '$.num_classes: must be integer'],
    [(d) => { d.normalization.std[1] = 0; }, '$.normalization.std[1]: 0 must be > 0'],
    [(d) => { d.normalization.mean.pop(); }, '$.normalization.mean: has 2 item(s), at least 3 needed'],
    [(d) => { d.colour = 'blue'; }, '$.colour: unknown field'],
    [(d) => { d.preprocessing.crop = 'centre'; }, '$.preprocessing.crop: unknown field'],
    [(d) => { d.preprocessing.resize = 'crop'; }, '$.preprocessing.resize: "crop" is not one of ["letterbox", "stretch"]'],
    [(d) => { d.output_stride = 12; }, '$.output_stride: 12 is not one of [8, 16, 32]'],
    [(d) => { d.name = ''; }, '$.name: "" is shorter than 1 character(s)'],
    [(d) => { d.rates[0] = 0; }, '$.rates[0]: 0 must be >= 1'],
    [(d) => { d.input_size.push(3); }, '$.input_size: has 3 item(s), at most 2 allowed'],
    [(d) => { d.version = 3; }, '$.version: must be 2, got 3'],
  ];
  validateDescription(v2(), SCHEMA);
  for (const [spoil, fragment] of cases) {
    const d = v2();
    spoil(d);
    assert.throws(() => validateDescription(d, SCHEMA), (error) => {
      assert.ok(error.message.startsWith('model description does not match the schema: '), error.message);
      assert.ok(error.message.includes(fragment), `${error.message}\n  should contain: ${fragment}`);
      return true;
    });
  }
  // every error is listed, a wrong type once
  const d = v2();
  delete d.head;
  d.decoder = 'no';
  assert.throws(() => validateDescription(d, SCHEMA),
    { message: 'model description does not match the schema: $.head: required field is missing; $.decoder: must be boolean, got string "no"' });
});

test('a schema keyword the validator does not know is an error, never ignored', () => {
  const schema = structuredClone(SCHEMA);
  schema.properties.normalization.properties.std.minimumItems = 3; // a typo of minItems
  assert.throws(() => validateDescription(v2(), schema), /unknown keyword: "minimumItems"/);
});
