// HF tokenizers (its Rust core, through the npm binding `tokenizers`) for compare_tokenizer_node.sh.
//   node hf_tokenizers.js train OUT_DIR TRAIN_FILE      OUT_DIR/tokenizer.json: BPE + ByteLevel trained by HF
//   node hf_tokenizers.js encode TOKENIZER_JSON STRINGS.json OUT.json   ids per string (no special tokens added)
//   node hf_tokenizers.js full TOKENIZER_JSON STRINGS.jsonl OUT.jsonl   per string: ids / ids_special
//       (addSpecialTokens false / true) and their decodes with skipSpecialTokens false / true
//       (dec, dec_skip, dec_special, dec_special_skip), as `peft_tokenize --full` writes them
//   node hf_tokenizers.js bench TOKENIZER_JSON STRINGS.jsonl REPEATS    MB/s: one encode call per string, and encodeBatch
// NODE_PATH must reach the installed `tokenizers` package.
const tk = require("tokenizers");
const fs = require("fs");
async function main() {
  const [cmd, a, b, c] = process.argv.slice(2);
  if (cmd === "train") {
    const t = new tk.Tokenizer(tk.BPE.empty());
    t.setPreTokenizer(tk.byteLevelPreTokenizer(false, true));
    t.train([b]);
    t.addSpecialTokens(["<|endoftext|>"]);
    fs.mkdirSync(a, { recursive: true });
    t.save(a + "/tokenizer.json", true);
    // The binding has no ByteLevel decoder constructor: add GPT-2's, so decode is byte-level (HF
    // joins tokens with spaces when a tokenizer.json has no decoder).
    const d = JSON.parse(fs.readFileSync(a + "/tokenizer.json", "utf8"));
    d.decoder = { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true };
    fs.writeFileSync(a + "/tokenizer.json", JSON.stringify(d, null, 2));
  } else if (cmd === "encode") {
    const t = tk.Tokenizer.fromFile(a);
    const strings = JSON.parse(fs.readFileSync(b, "utf8"));
    const out = [];
    const t0 = Date.now();
    for (const s of strings) out.push((await t.encode(s, null, { addSpecialTokens: false })).getIds());
    console.error(`HF encode ${strings.length} strings in ${(Date.now() - t0) / 1000}s`);
    fs.writeFileSync(c, JSON.stringify(out));
  } else if (cmd === "full" || cmd === "bench") {
    const t = tk.Tokenizer.fromFile(a);
    const strings = fs.readFileSync(b, "utf8").split("\n").filter((l) => l.length).map((l) => JSON.parse(l));
    if (cmd === "bench") {
      const repeats = parseInt(c, 10) || 1;
      let bytes = 0, tokens = 0;
      const c0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      for (let r = 0; r < repeats; ++r)
        for (const s of strings) {
          bytes += Buffer.byteLength(s, "utf8");
          tokens += (await t.encode(s, null, { addSpecialTokens: false })).getIds().length;
        }
      const sec = Number(process.hrtime.bigint() - t0) / 1e9;
      const cu = process.cpuUsage(c0);
      const cpu = (cu.user + cu.system) / 1e6;
      // encodeBatch: one call for all strings (no per-call promise overhead; 1 thread with RAYON_NUM_THREADS=1).
      const t1 = process.hrtime.bigint();
      for (let r = 0; r < repeats; ++r) await t.encodeBatch(strings, { addSpecialTokens: false });
      const bsec = Number(process.hrtime.bigint() - t1) / 1e9;
      const mb = bytes / 1e6;
      console.log(`HF tokenizers: ${strings.length} strings x ${repeats}: ${bytes} bytes -> ${tokens} tokens: ` +
                  `encode per string ${(mb / sec).toFixed(2)} MB/s (${(mb / cpu).toFixed(2)} MB per CPU-s), ` +
                  `encodeBatch ${(mb / bsec).toFixed(2)} MB/s`);
      return;
    }
    const lines = [];
    for (const s of strings) {
      const row = {};
      for (const special of [false, true]) {
        const ids = (await t.encode(s, null, { addSpecialTokens: special })).getIds();
        const suffix = special ? "_special" : "";
        row["ids" + suffix] = ids;
        row["dec" + suffix] = await t.decode(ids, false);
        row["dec" + suffix + "_skip"] = await t.decode(ids, true);
      }
      lines.push(JSON.stringify(row));
    }
    fs.writeFileSync(c, lines.join("\n") + "\n");
  } else {
    throw new Error("usage: see the header of hf_tokenizers.js");
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
