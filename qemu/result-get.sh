#!/usr/bin/env bash
# Read the JSON-lines result file written by the guest agent.
#   qemu/result-get.sh RESULT.jsonl            validate; list the keys
#   qemu/result-get.sh RESULT.jsonl KEY        print the (last) value of KEY
# Strings print raw, lists print one element per line, others as JSON.
# Fails (exit 1) if any line is not valid JSON or KEY is absent.
set -euo pipefail
file=${1:?usage: result-get.sh RESULT.jsonl [KEY]}
key=${2:-}
python3 - "$file" "$key" <<'PY'
import json, sys
path, key = sys.argv[1], sys.argv[2]
values = {}
with open(path, encoding="utf-8", errors="replace") as f:
    for n, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            values[obj["key"]] = obj["value"]
        except (ValueError, KeyError, TypeError) as e:
            sys.exit(f"result-get.sh: {path}:{n}: bad line ({e}): {line[:120]!r}")
if not key:
    print(" ".join(values))
    sys.exit(0)
if key not in values:
    sys.exit(f"result-get.sh: {path}: no key {key!r}")
v = values[key]
if isinstance(v, str):
    print(v)
elif isinstance(v, list):
    for item in v:
        print(item if isinstance(item, str) else json.dumps(item))
else:
    print(json.dumps(v))
PY
