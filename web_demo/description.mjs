// The model description (ModelDescription) of an exported .tflite, read and checked in JavaScript.
//
// The exporter (convert/metadata.py) stores the description as UTF-8 JSON in the flatbuffer's metadata
// entry named 'ksac_zoo_description'; its format is ksac_runtime/model_description.schema.json, the one
// schema that the Python (ksac_runtime/description.py), Java (android_demo/core ModelDescription.java) and
// JavaScript readers share. Version 2 carries "version": 2; files written before versions existed carry
// none and read as version 1 (the same fields). A newer version is refused, naming it.
//
//   import { readDescription, validateDescription } from './description.mjs';
//   const description = readDescription(new Uint8Array(await file.arrayBuffer()));
//   validateDescription(upgradeDescription(description), schema);   // Node: schema from the JSON file
//
// readDescription needs nothing but the bytes (it runs in the browser too). validateDescription uses
// Ajv (devDependency, draft 2020-12) in strict mode, which throws on any schema keyword it does not know,
// so a keyword added to the schema is never silently ignored; it is available under Node only.

/** Name of the metadata entry holding the description. */
export const METADATA_NAME = 'ksac_zoo_description';
/** The newest description version this code reads (and the one the exporter writes). */
export const DESCRIPTION_VERSION = 2;
/** What a missing "preprocessing" means (ksac_runtime/preprocess.py INFERENCE_PREPROCESSING, the one contract). */
export const INFERENCE_PREPROCESSING = Object.freeze({
  resize: 'letterbox',
  interpolation: 'bilinear_half_pixel',
  anchor: 'top_left',
  pad: 'mean',
});

// Bytes 4..8 of every TFLite flatbuffer: the schema's file identifier.
const TFLITE_IDENTIFIER = 'TFL3';
// Field slots of the TFLite schema (tensorflow/compiler/mlir/lite/schema/schema.fbs), as vtable offsets
// (4 + 2 * field id): Model.buffers is field 4, Model.metadata field 6; Metadata.name 0, Metadata.buffer 1;
// Buffer.data 0, Buffer.offset 1, Buffer.size 2 (files over 2 GB keep buffers after the flatbuffer).
const MODEL_BUFFERS = 12;
const MODEL_METADATA = 16;
const METADATA_NAME_FIELD = 4;
const METADATA_BUFFER_FIELD = 6;
const BUFFER_DATA = 4;
const BUFFER_OFFSET = 6;
const BUFFER_SIZE = 8;

/** A damaged flatbuffer: an offset or length that leads outside the file. */
class Damaged extends Error {}

/**
 * Just enough of a flatbuffer reader for the Model table's metadata and buffers, every read
 * bounds-checked (hand-written: the flatbuffers npm package would need the generated TFLite schema too,
 * for three tables).
 */
class FlatReader {
  /** @param {Uint8Array} bytes */
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  need(pos, size) {
    if (!Number.isInteger(pos) || pos < 0 || pos + size > this.bytes.length) throw new Damaged();
  }

  u16(pos) { this.need(pos, 2); return this.view.getUint16(pos, true); }
  u32(pos) { this.need(pos, 4); return this.view.getUint32(pos, true); }
  i32(pos) { this.need(pos, 4); return this.view.getInt32(pos, true); }
  u64(pos) { this.need(pos, 8); return Number(this.view.getBigUint64(pos, true)); }

  /** Position of the table a uoffset at `pos` points to. */
  deref(pos) { return pos + this.u32(pos); }

  /** Position of a field of the table at `table`, or null when the field is absent. */
  field(table, slot) {
    const vtable = table - this.i32(table);
    const vtableSize = this.u16(vtable);
    if (slot >= vtableSize) return null;
    const offset = this.u16(vtable + slot);
    return offset === 0 ? null : table + offset;
  }

  /** [start, length] of the vector a table field points to; [0, 0] when absent. */
  vector(table, slot) {
    const at = this.field(table, slot);
    if (at === null) return [0, 0];
    const pos = this.deref(at);
    return [pos + 4, this.u32(pos)];
  }

  /** The elements (table positions) of a vector of tables. */
  tables(table, slot) {
    const [start, length] = this.vector(table, slot);
    this.need(start, 4 * length);
    return Array.from({ length }, (_, i) => this.deref(start + 4 * i));
  }

  /** The bytes of a [ubyte] field (a view, no copy). */
  byteVector(table, slot) {
    const [start, length] = this.vector(table, slot);
    this.need(start, length);
    return this.bytes.subarray(start, start + length);
  }
}

/** @param {Uint8Array | ArrayBuffer | ArrayBufferView} bytes */
function asBytes(bytes) {
  if (bytes instanceof Uint8Array) return bytes;
  if (bytes instanceof ArrayBuffer) return new Uint8Array(bytes);
  if (ArrayBuffer.isView(bytes)) return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  throw new TypeError(`expected the bytes of a .tflite file (Uint8Array or ArrayBuffer), got ${typeof bytes}`);
}

/**
 * Every metadata entry of a .tflite file as [name, payload bytes].
 *
 * @param {Uint8Array | ArrayBuffer} bytes the whole file
 * @param {string} [where] how messages name the file
 * @returns {Array<[string, Uint8Array]>}
 * @throws {Error} not a TFLite flatbuffer (no TFL3 identifier), or a damaged one
 */
export function metadataEntries(bytes, where = 'this TFLite model') {
  const data = asBytes(bytes);
  if (data.length === 0) throw new Error(`${where} is empty, not a TFLite model`);
  const identifier = data.length >= 8 ? String.fromCharCode(...data.subarray(4, 8)) : '';
  if (identifier !== TFLITE_IDENTIFIER) {
    throw new Error(`${where} is not a TFLite model (no ${TFLITE_IDENTIFIER} flatbuffer identifier)`);
  }
  const fb = new FlatReader(data);
  const names = new TextDecoder('utf-8', { fatal: true });
  try {
    const model = fb.deref(0);
    const buffers = fb.tables(model, MODEL_BUFFERS);
    return fb.tables(model, MODEL_METADATA).map((entry) => {
      const name = names.decode(fb.byteVector(entry, METADATA_NAME_FIELD));
      const bufferAt = fb.field(entry, METADATA_BUFFER_FIELD);
      const index = bufferAt === null ? 0 : fb.u32(bufferAt);
      if (index >= buffers.length) throw new Damaged();
      const buffer = buffers[index];
      const offsetAt = fb.field(buffer, BUFFER_OFFSET);
      const offset = offsetAt === null ? 0 : fb.u64(offsetAt);
      if (offset > 1) {
        // Files over 2 GB keep buffers after the flatbuffer; (offset, size) locate them.
        const sizeAt = fb.field(buffer, BUFFER_SIZE);
        const size = sizeAt === null ? 0 : fb.u64(sizeAt);
        fb.need(offset, size);
        return [name, data.subarray(offset, offset + size)];
      }
      return [name, fb.byteVector(buffer, BUFFER_DATA)];
    });
  } catch (error) {
    if (error instanceof Damaged || error instanceof TypeError || error instanceof RangeError) {
      // RangeError/TypeError: a garbled length or a metadata name that is not UTF-8
      throw new Error(`${where} is not a valid TFLite model: its flatbuffer is damaged or cut short `
        + '(an incomplete copy or download?)');
    }
    throw error;
  }
}

/**
 * The version of a parsed description: 1 when it has no "version" (written before versions existed).
 *
 * @param {object} description
 * @returns {number} 1 or 2
 * @throws {Error} a version that is not a whole number >= 1, or one newer than this code reads
 */
export function descriptionVersion(description) {
  if (!Object.hasOwn(description, 'version')) return 1;
  const version = description.version;
  if (!Number.isInteger(version) || version < 1) {
    throw new Error(`model description "version" must be a whole number from 1, got ${JSON.stringify(version)}`);
  }
  if (version > DESCRIPTION_VERSION) {
    throw new Error(`model description version ${version} is newer than this app reads (up to ${DESCRIPTION_VERSION})`);
  }
  return version;
}

/**
 * The description stored in a .tflite file (its 'ksac_zoo_description' metadata entry), as stored:
 * version 1 (no "version") or 2; see upgradeDescription for the version-2 form.
 *
 * @param {Uint8Array | ArrayBuffer} bytes the whole .tflite file
 * @param {string} [where] how messages name the file (default "this TFLite model")
 * @returns {object} the parsed JSON object
 * @throws {Error} not a .tflite file, a damaged one, no such entry, an entry that is not a JSON object,
 *   or a description version newer than DESCRIPTION_VERSION
 */
export function readDescription(bytes, where = 'this TFLite model') {
  const entry = metadataEntries(bytes, where).find(([name]) => name === METADATA_NAME);
  if (!entry) {
    throw new Error(`${where} has no '${METADATA_NAME}' metadata; export it with convert/to_tflite.py so that `
      + 'it carries its classes, input size and normalisation');
  }
  let description;
  try {
    description = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(entry[1]));
  } catch (error) {
    throw new Error(`${where}: its '${METADATA_NAME}' metadata is not JSON (${error.message})`);
  }
  if (description === null || typeof description !== 'object' || Array.isArray(description)) {
    throw new Error(`${where}: its '${METADATA_NAME}' metadata is not a JSON object`);
  }
  descriptionVersion(description);
  return description;
}

/**
 * A version-2 (deep) copy of a description of version 1 or 2: "version": 2 added, and a missing
 * "preprocessing" (files exported before it existed) set to what every reader takes its absence for,
 * the one contract (INFERENCE_PREPROCESSING).
 *
 * @param {object} description
 * @returns {object}
 */
export function upgradeDescription(description) {
  descriptionVersion(description);
  const upgraded = structuredClone(description); // a deep copy: the caller's object stays as it was
  upgraded.version = DESCRIPTION_VERSION;
  upgraded.preprocessing ??= { ...INFERENCE_PREPROCESSING };
  return upgraded;
}

// ---- validation against the schema (Node: Ajv from web_demo/node_modules) ----

// Loaded only under Node, so that the page can import readDescription without a bundler.
let Ajv2020 = null;
let ajvProblem = null;
if (typeof process !== 'undefined' && process.versions?.node) {
  try {
    ({ default: Ajv2020 } = await import('ajv/dist/2020.js'));
  } catch (error) {
    ajvProblem = error;
  }
}
const compiled = new WeakMap();

/** JSON path of an Ajv instancePath ("/normalization/std/1" -> "$.normalization.std[1]"). */
function jsonPath(pointer, extraKey) {
  const parts = pointer === '' ? [] : pointer.slice(1).split('/').map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (extraKey !== undefined) parts.push(extraKey);
  return '$' + parts.map((p) => (/^\d+$/.test(p) ? `[${p}]`
    : /^[A-Za-z_][A-Za-z0-9_]*$/.test(p) ? `.${p}` : `[${JSON.stringify(p)}]`)).join('');
}

function typeName(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value === 'object' ? 'object' : typeof value;
}

/** One Ajv error in the words of the Java validator (DescriptionSchema.java), path first. */
function message(e) {
  const p = e.params;
  const show = (v) => (Array.isArray(v) ? `[${v.map(show).join(', ')}]` : JSON.stringify(v));
  switch (e.keyword) {
    case 'required': return `${jsonPath(e.instancePath, p.missingProperty)}: required field is missing`;
    case 'additionalProperties':
      return `${jsonPath(e.instancePath, p.additionalProperty)}: unknown field (the schema allows only `
        + `${Object.keys(e.parentSchema.properties ?? {}).join(', ')})`;
    case 'type': {
      const got = typeName(e.data);
      return `${jsonPath(e.instancePath)}: must be ${p.type}, got ${got}${got === 'object' || got === 'array' ? '' : ` ${show(e.data)}`}`;
    }
    case 'const': return `${jsonPath(e.instancePath)}: must be ${show(p.allowedValue)}, got ${show(e.data)}`;
    case 'enum': return `${jsonPath(e.instancePath)}: ${show(e.data)} is not one of ${show(p.allowedValues)}`;
    case 'minimum': return `${jsonPath(e.instancePath)}: ${show(e.data)} must be >= ${p.limit}`;
    case 'exclusiveMinimum': return `${jsonPath(e.instancePath)}: ${show(e.data)} must be > ${p.limit}`;
    case 'minItems': return `${jsonPath(e.instancePath)}: has ${e.data.length} item(s), at least ${p.limit} needed`;
    case 'maxItems': return `${jsonPath(e.instancePath)}: has ${e.data.length} item(s), at most ${p.limit} allowed`;
    case 'minLength': return `${jsonPath(e.instancePath)}: ${show(e.data)} is shorter than ${p.limit} character(s)`;
    default: return `${jsonPath(e.instancePath)}: ${e.message}`;
  }
}

/**
 * Throws unless `description` matches `schema` (the parsed ksac_runtime/model_description.schema.json).
 * Version 1 descriptions do not (the schema asks for "version": 2): pass upgradeDescription(d).
 *
 * @param {object} description a parsed description
 * @param {object} schema the parsed schema (compiled once per object)
 * @throws {Error} "model description does not match the schema: $.path: what; ..." listing every error;
 *   or, from Ajv, a schema with a keyword it does not know (strict mode)
 */
export function validateDescription(description, schema) {
  if (Ajv2020 === null) {
    throw new Error('validateDescription needs Ajv under Node: run `cd web_demo && npm ci`'
      + (ajvProblem ? ` (${ajvProblem.message})` : ''));
  }
  let validate = compiled.get(schema);
  if (!validate) {
    // strict: unknown keywords, ambiguous types and required fields without properties are errors
    validate = new Ajv2020({ strict: true, allErrors: true, verbose: true }).compile(schema);
    compiled.set(schema, validate);
  }
  if (validate(description)) return;
  // A value of the wrong type gets one error, as in the Java validator, not one per keyword.
  const typeErrors = new Set(validate.errors.filter((e) => e.keyword === 'type').map((e) => e.instancePath));
  const errors = validate.errors.filter((e) => e.keyword === 'type' || !typeErrors.has(e.instancePath));
  throw new Error(`model description does not match the schema: ${errors.map(message).join('; ')}`);
}
