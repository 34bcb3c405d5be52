#!/usr/bin/env python3
"""Reverse direction: load the adapter_config.json files peft-cpp wrote
(`peft_conformance --resave OUT`) with Python PEFT and check they mean what PEFT itself wrote
for the same case (configs.json `adapter_config`).

usage: check_resaved.py OUT FIXTURES_PEFT_DIR      (prints PASS/FAIL lines and a summary)
"""
import json
import sys
import warnings
from pathlib import Path

from peft import LoraConfig


def normalise(key, value):
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if key in ("target_modules", "exclude_modules") and isinstance(value, list):
        return sorted(value)
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict
        return asdict(value)
    return value


def main():
    out, fixtures = Path(sys.argv[1]), Path(sys.argv[2])
    cases = json.loads((fixtures / "configs.json").read_text())
    passed = failed = 0
    for case_dir in sorted((out / "configs").iterdir(), key=lambda p: int(p.name)):
        n = int(case_dir.name)
        expected = cases[n]["adapter_config"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = LoraConfig.from_pretrained(str(case_dir)).to_dict()
        diffs = [k for k in expected
                 if k in loaded and normalise(k, loaded[k]) != normalise(k, expected[k])]
        missing = [k for k in expected if k not in loaded and k != "kasa_config"]
        if diffs or missing:
            failed += 1
            print(f"FAIL configs/{n} ({cases[n]['name']}): differs in {diffs}, missing {missing}")
        else:
            passed += 1
            print(f"PASS configs/{n} ({cases[n]['name']})")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
