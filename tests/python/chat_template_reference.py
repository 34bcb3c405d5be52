"""Python jinja2 set up as transformers renders chat templates, and the conversations both
compare_chat_templates.py and make_chat_template_cases.py render.

The environment mirrors transformers' `_compile_jinja_template` / `render_jinja_template`
(src/transformers/utils/chat_template_utils.py): ImmutableSandboxedEnvironment(trim_blocks=True,
lstrip_blocks=True, extensions=[loopcontrols]) plus the `{% generation %}` tag, a `tojson` filter
calling json.dumps(ensure_ascii=False, indent, separators, sort_keys), globals `raise_exception`
and `strftime_now`, and render(messages=..., tools=None, documents=None, add_generation_prompt=...,
**special_tokens). Needs only jinja2 >= 3.1 (Debian's python3-jinja2).
"""
import json
from datetime import datetime

import jinja2
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

# transformers' SPECIAL_TOKENS_ATTRIBUTES that are strings (special_tokens_map skips unset ones).
SPECIAL_TOKEN_KEYS = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]

# Llama 3.1/3.2 print "Today Date: {{ date_string }}" (strftime_now when it is not given): a fixed
# date keeps the renders reproducible.
DATE_STRING = "26 Jul 2024"


class _Generation(Extension):
    """`{% generation %}...{% endgeneration %}`: renders its body (span tracking not needed here)."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt):
    return datetime.now().strftime(fmt)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


def special_tokens(tokenizer_config):
    """The special-token strings transformers passes to the template (AddedToken dicts -> content)."""
    out = {}
    for key in SPECIAL_TOKEN_KEYS:
        value = tokenizer_config.get(key)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            out[key] = value
    return out


def render(env, template, variables):
    """(output, None) or (None, error message): a template that raises is a result."""
    kwargs = {"tools": None, "documents": None, **variables}
    try:
        return env.from_string(template).render(**kwargs), None
    except Exception as e:  # TemplateError, UndefinedError, TypeError, SecurityError, ...
        return None, f"{type(e).__name__}: {e}"


SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
TRICKY = (
    "Line one\nline two\n\n  indented\ttab \"double\" 'single' {{ braces }} {% tag %} {# c #} back\\slash "
    "unicode: é ü 中文 😀 \u2028 end  "
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "City name, e.g. Zürich"}},
                "required": ["city"],
            },
        },
    }
]

# name -> (messages, extra variables)
CONVERSATIONS = {
    "single_turn": ([{"role": "user", "content": "Hello!"}], {}),
    "system_single_turn": ([SYSTEM, {"role": "user", "content": "What is 2+2?"}], {}),
    "multi_turn": (
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Tell me a joke."},
        ],
        {},
    ),
    "system_multi_turn": (
        [
            SYSTEM,
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "   Hello there   "},
            {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "Goodbye!"},
        ],
        {},
    ),
    "tricky_content": ([SYSTEM, {"role": "user", "content": TRICKY}, {"role": "assistant", "content": TRICKY}], {}),
    "empty_content": ([{"role": "user", "content": ""}], {}),
    "not_alternating": ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], {}),
    "assistant_first": ([{"role": "assistant", "content": "I start."}, {"role": "user", "content": "ok"}], {}),
    "tools": (
        [
            SYSTEM,
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "call0Abc9", "type": "function",
                                "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
            },
            {"role": "tool", "name": "get_weather", "tool_call_id": "call0Abc9",
             "content": "{\"temp\": 21.5, \"unit\": \"°C\"}"},
        ],
        {"tools": TOOLS},
    ),
}


def variables(conversation, add_generation_prompt, tokens):
    messages, extra = CONVERSATIONS[conversation]
    return {**tokens, "date_string": DATE_STRING, "messages": messages,
            "add_generation_prompt": add_generation_prompt, **extra}
