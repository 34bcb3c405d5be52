// HF tokenizers (its Rust core, through the npm binding `tokenizers`) for compare_tokenizer_node.sh.
//   node hf_tokenizers.js train OUT_DIR TRAIN_FILE      OUT_DIR/tokenizer.json: BPE + ByteLevel trained by HF
//   node hf_tokenizers.js encode TOKENIZER_JSON STRINGS.json OUT.json   ids per string (no special tokens added)
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
  } else if (cmd === "encode") {
    const t = tk.Tokenizer.fromFile(a);
    const strings = JSON.parse(fs.readFileSync(b, "utf8"));
    const out = [];
    const t0 = Date.now();
    for (const s of strings) out.push((await t.encode(s, null, { addSpecialTokens: false })).getIds());
    console.error(`HF encode ${strings.length} strings in ${(Date.now() - t0) / 1000}s`);
    fs.writeFileSync(c, JSON.stringify(out));
  } else {
    throw new Error("usage: see the header of hf_tokenizers.js");
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
