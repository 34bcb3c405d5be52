#!/usr/bin/env python3
"""Write tests/data/chat_templates/cases.json: the renders of the shipped chat templates by Python
jinja2 with transformers' settings (chat_template_reference.environment()), the expected strings
of test_chat_template.cpp's real-template tests.

    python3 tests/python/make_chat_template_cases.py

Needs only python3-jinja2 (>= 3.1). Each case: {"template": file, "conversation": name,
"add_generation_prompt": bool, "variables": {...}, "expected": str} or, where the template raises,
{"...", "raises": "the message"}.
"""
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chat_template_reference as ref  # noqa: E402
from compare_chat_templates import SHIPPED, SHIPPED_TOKENS  # noqa: E402

CONVERSATIONS = ["system_multi_turn", "multi_turn", "tricky_content", "not_alternating", "tools"]


def main():
    env = ref.environment()
    cases = []
    for path in sorted(glob.glob(os.path.join(SHIPPED, "*.jinja"))):
        name = os.path.basename(path)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for conv in CONVERSATIONS:
            for agp in (False, True):
                variables = ref.variables(conv, agp, SHIPPED_TOKENS[os.path.splitext(name)[0]])
                out, err = ref.render(env, text, variables)
                case = {"template": name, "conversation": conv, "add_generation_prompt": agp, "variables": variables}
                if err is None:
                    case["expected"] = out
                else:
                    case["raises"] = err.split(": ", 1)[-1]
                cases.append(case)
    target = os.path.join(SHIPPED, "cases.json")
    with open(target, "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {target}")


if __name__ == "__main__":
    main()
