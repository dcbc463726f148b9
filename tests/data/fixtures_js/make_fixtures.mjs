// Writes the same small dataset in every on-disk form saelab reads, each by an independent writer:
// Parquet by parquet-wasm (Rust arrow-rs) and hyparquet-writer (JavaScript), Arrow IPC files and
// streams by apache-arrow, gzip by node's zlib; and the JSON Lines version that the tests compare
// every reader against, window by window.
// Usage: node make_fixtures.mjs NPM_DIR OUT_DIR [big_rows]  (big_rows > 0: only the speed file)
import { createRequire } from 'module';
import fs from 'fs';
import path from 'path';
import zlib from 'zlib';
import { execFileSync } from 'child_process';

const [npmDir, outDir, bigRowsArg] = process.argv.slice(2);
const require = createRequire(path.join(path.resolve(npmDir), 'node_modules', 'x.js'));
const arrow = require('apache-arrow');
const pq = require('parquet-wasm');
const { parquetWriteBuffer } = await import(
  path.join(path.resolve(npmDir), 'node_modules', 'hyparquet-writer', 'src', 'index.js'));
fs.mkdirSync(outDir, { recursive: true });
const out = (name, bytes) => fs.writeFileSync(path.join(outDir, name), bytes);

// A deterministic generator (mulberry32) so every run writes the same data.
function rng(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
// With big_rows, only the large pretokenized file for the speed figure: rows of 512 int64
// ids, Snappy, like a pretokenized Hugging Face dataset; its token count and sum in big.sum.
const bigRows = Number(bigRowsArg || 0);
if (bigRows > 0) {
  const br = rng(5);
  const rows = [];
  let sum = 0n;
  for (let i = 0; i < bigRows; ++i) {
    const row = new BigInt64Array(512);
    for (let k = 0; k < 512; ++k) {
      const v = Math.floor(br() * 50257);
      row[k] = BigInt(v);
      sum += BigInt(v);
    }
    rows.push(Array.from(row));
  }
  const t = new arrow.Table({ input_ids: arrow.vectorFromArray(
      rows, new arrow.List(new arrow.Field('item', new arrow.Int64(), true))) });
  for (const dict of [true, false]) {
    const b = new pq.WriterPropertiesBuilder().setCompression(pq.Compression.SNAPPY)
                  .setDictionaryEnabled(dict).setMaxRowGroupSize(4096);
    out(`big_${dict ? 'dict' : 'plain'}.parquet`,
        pq.writeParquet(pq.Table.fromIPCStream(arrow.tableToIPC(t, 'stream')), b.build()));
  }
  out('big.sum', `${bigRows * 512} ${sum}\n`);
  process.exit(0);
}

const r = rng(17);
const N = 53;
const words = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'über', '日本語', 'naïve', 'emoji 🙂', 'x'];
const ids = [], toks = [], text = [];
for (let i = 0; i < N; ++i) {
  const len = 8 + Math.floor(r() * 30);
  const row = [];
  for (let k = 0; k < len; ++k) row.push(Math.floor(r() * (i % 4 === 0 ? 100000 : 300)));
  ids.push(i % 7 === 3 ? null : row);  // null rows are skipped by readers
  toks.push(row.slice(0, 8 + (i % 5)).map((v) => v % 50000));
  let s = '';
  const nw = 1 + Math.floor(r() * 12);
  for (let k = 0; k < nw; ++k) s += (k ? ' ' : '') + words[Math.floor(r() * words.length)];
  text.push(i % 5 === 2 ? null : i % 3 === 0 ? 'repeated document' : s);
}
const jsonl = (rows, key) =>
  rows.filter((v) => v !== null).map((v) => JSON.stringify({ [key]: v }) + '\n').join('');
out('ids.jsonl', jsonl(ids, 'input_ids'));
out('tokens.jsonl', jsonl(toks, 'tokens'));
out('text.jsonl', jsonl(text, 'text'));
// gzip: two concatenated members, as `cat a.gz b.gz` makes.
const idsJsonl = jsonl(ids, 'input_ids');
const cut = idsJsonl.indexOf('\n', idsJsonl.length >> 1) + 1;
out('ids.jsonl.gz', Buffer.concat([zlib.gzipSync(idsJsonl.slice(0, cut)),
                                   zlib.gzipSync(idsJsonl.slice(cut))]));
out('text.jsonl.gz', zlib.gzipSync(jsonl(text, 'text')));

function arrowTable(n, idList, tokList, textList, large) {
  const I64 = new arrow.Int64(), I32 = new arrow.Int32();
  const L = large ? arrow.LargeList : arrow.List;
  return new arrow.Table({
    input_ids: arrow.vectorFromArray(idList.slice(0, n).map((v) => v && v.map(BigInt)),
                                     new L(new arrow.Field('item', I64, true))),
    tokens: arrow.vectorFromArray(tokList.slice(0, n), new arrow.List(new arrow.Field('item', I32, true))),
    text: arrow.vectorFromArray(textList.slice(0, n), large ? new arrow.LargeUtf8() : new arrow.Utf8()),
  });
}

// Arrow IPC: streams (the `datasets` cache format) and files, in record batches of 10 rows.
function batched(large) {
  const batches = [];
  for (let s = 0; s < N; s += 10) {
    const t = arrowTable(N, ids.slice(s), toks.slice(s), text.slice(s), large);
    batches.push(...t.slice(0, Math.min(10, N - s)).batches);
  }
  return new arrow.Table(batches);
}
out('data.arrow', arrow.tableToIPC(batched(false), 'stream'));
out('data_file.arrow', arrow.tableToIPC(batched(false), 'file'));
out('data_large.arrow', arrow.tableToIPC(batched(true), 'file'));
// Body compression: apache-arrow compresses each buffer with the codec registered for it; the
// zstd tool (when installed) does the compressing. apache-arrow 21.2.0 writes each buffer's
// compressed length where the format puts the uncompressed one, so readers must refuse this file.
try {
  execFileSync('zstd', ['--version']);
  arrow.compressionRegistry.set(arrow.CompressionType.ZSTD, {
    encode: (d) => new Uint8Array(execFileSync('zstd', ['-q', '-c'], { input: d })),
  });
  out('data_zstd.arrow', arrow.RecordBatchStreamWriter.writeAll(
      batched(false), { compressionType: arrow.CompressionType.ZSTD }).toUint8Array(true));
} catch (e) {
  if (e.code !== 'ENOENT') throw e;
}

// Parquet by arrow-rs: every codec, page format v1 and v2, dictionary on and off, several row
// groups and many small pages.
const table = arrowTable(N, ids, toks, text, false);
const codecs = { none: pq.Compression.UNCOMPRESSED, snappy: pq.Compression.SNAPPY,
                 gzip: pq.Compression.GZIP, zstd: pq.Compression.ZSTD,
                 brotli: pq.Compression.BROTLI, lz4raw: pq.Compression.LZ4_RAW };
for (const [cname, codec] of Object.entries(codecs)) {
  for (const version of ['v1', 'v2']) {
    for (const dict of [true, false]) {
      let b = new pq.WriterPropertiesBuilder()
                  .setCompression(codec)
                  .setWriterVersion(version === 'v1' ? pq.WriterVersion.V1 : pq.WriterVersion.V2)
                  .setDictionaryEnabled(dict)
                  .setMaxRowGroupSize(16)
                  .setDataPageSizeLimit(128)
                  .setWriteBatchSize(4);
      if (!dict && version === 'v2') {
        // Without a dictionary, v2 files use the delta encodings.
        b = b.setColumnEncoding('input_ids.list.item', pq.Encoding.DELTA_BINARY_PACKED)
                .setColumnEncoding('tokens.list.item', pq.Encoding.DELTA_BINARY_PACKED)
                .setColumnEncoding('text', cname === 'zstd' ? pq.Encoding.DELTA_BYTE_ARRAY
                                                             : pq.Encoding.DELTA_LENGTH_BYTE_ARRAY);
      }
      const w = pq.Table.fromIPCStream(arrow.tableToIPC(table, 'stream'));
      out(`rs_${cname}_${version}_${dict ? 'dict' : 'plain'}.parquet`, pq.writeParquet(w, b.build()));
    }
  }
}

// Parquet by hyparquet-writer (its own Thrift, Snappy and v2 pages), with an explicit 3-level
// list schema.
const hyCols = [
  { name: 'input_ids', data: ids.map((v) => v && v.map(BigInt)) },
  { name: 'text', data: text },
];
const hySchema = [
  { name: 'root', num_children: 2 },
  { name: 'input_ids', repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
  { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
  { name: 'element', type: 'INT64', repetition_type: 'OPTIONAL' },
  { name: 'text', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
];
out('hy_snappy.parquet', Buffer.from(parquetWriteBuffer({ columnData: hyCols, schema: hySchema,
                                                          rowGroupSize: 20, pageSize: 100 })));
out('hy_delta.parquet', Buffer.from(parquetWriteBuffer({
  columnData: [{ ...hyCols[0] }, { ...hyCols[1], encoding: 'DELTA_BYTE_ARRAY' }],
  schema: hySchema, codec: 'UNCOMPRESSED', rowGroupSize: [7, 30] })));

// A column saelab must refuse by name: scalar integers where a list of token ids is expected.
out('scalar.parquet', Buffer.from(parquetWriteBuffer({
  columnData: [{ name: 'input_ids', data: [1, 2, 3], type: 'INT32' }] })));

