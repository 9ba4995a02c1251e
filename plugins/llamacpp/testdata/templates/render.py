#!/usr/bin/env python3
"""Render every chat template (*.jinja) against every case (cases/*.json) and
write the reference output to golden/<family>__<case>.txt, or the exception
message to golden/<family>__<case>.error when the template raises.

The Jinja environment reproduces the one Hugging Face transformers builds in
apply_chat_template (transformers/utils/chat_template_utils.py):

  * ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
    extensions=[jinja2.ext.loopcontrols])  (keep_trailing_newline stays False)
  * filter  tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
            = json.dumps with the same arguments
  * global  raise_exception(msg): raises jinja2.exceptions.TemplateError(msg)
  * global  strftime_now(fmt): here a FIXED date, 2026-01-15, for determinism

Variables: messages, tools (only when the case has tools), add_generation_prompt,
bos_token, eos_token (per family), date_string="15 Jan 2026" for the llama
families, plus every other top-level key of the case (e.g. enable_thinking,
builtin_tools, tools_in_user_message), like apply_chat_template's **kwargs.

Only jinja2 is needed (3.1.x). Run from this directory:  python3 render.py
"""

import glob
import json
import os
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
FIXED_NOW = datetime(2026, 1, 15, 0, 0, 0)

# Per family: special tokens and extra variables.
FAMILIES = {
    "llama3.1": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "date_string": "15 Jan 2026"},
    "llama3.2": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "date_string": "15 Jan 2026"},
    "qwen2.5": {"bos_token": "", "eos_token": "<|im_end|>"},
    "qwen3": {"bos_token": "", "eos_token": "<|im_end|>"},
    "mistral": {"bos_token": "<s>", "eos_token": "</s>"},
    "chatml": {"bos_token": "", "eos_token": "<|im_end|>"},
    "gemma": {"bos_token": "<bos>", "eos_token": "<eos>"},
}

CASE_KEYS = ("messages", "tools", "add_generation_prompt")


def raise_exception(message):
    raise TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers overrides Jinja's tojson: no HTML escaping, keeps non-ASCII,
    # and exposes indent/separators/sort_keys.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return FIXED_NOW.strftime(fmt)


def make_env():
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def read_text(path):
    with open(path, "r", encoding="utf-8", newline="") as f:
        return f.read()


def write_text(path, text):
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def main():
    os.chdir(HERE)
    env = make_env()
    os.makedirs("golden", exist_ok=True)
    for old in glob.glob(os.path.join("golden", "*")):
        os.remove(old)

    cases = {}
    for path in sorted(glob.glob(os.path.join("cases", "*.json"))):
        with open(path, "r", encoding="utf-8") as f:
            cases[os.path.splitext(os.path.basename(path))[0]] = json.load(f)

    n_ok = n_err = 0
    for family in sorted(FAMILIES):
        tpl_path = family + ".jinja"
        if not os.path.exists(tpl_path):
            print(f"skip {family}: {tpl_path} missing", file=sys.stderr)
            continue
        template = env.from_string(read_text(tpl_path))
        for name, case in cases.items():
            ctx = dict(FAMILIES[family])
            ctx["messages"] = case["messages"]
            ctx["add_generation_prompt"] = bool(case.get("add_generation_prompt", False))
            if case.get("tools"):
                ctx["tools"] = case["tools"]
            for key, val in case.items():
                if key not in CASE_KEYS:
                    ctx[key] = val
            base = os.path.join("golden", f"{family}__{name}")
            try:
                out = template.render(**ctx)
            except Exception as e:  # template raised (raise_exception or a type error)
                write_text(base + ".error", str(e))
                n_err += 1
            else:
                write_text(base + ".txt", out)
                n_ok += 1
    print(f"jinja2 {jinja2.__version__}: {n_ok} goldens, {n_err} errors")


if __name__ == "__main__":
    main()
