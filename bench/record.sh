#!/usr/bin/env bash
# Replaces (or appends) one "## <title>" section of bench/RESULTS.md with the given markdown.
# Usage: bench/record.sh "<title>" "<markdown starting with ## <title>>"
set -euo pipefail
cd "$(dirname "$0")"
title=$1
body=$2
[ -f RESULTS.md ] || printf '# Cube benchmark results\n\nEach section is written by the command it names; rerun it to refresh.\n' > RESULTS.md
python3 - "$title" "$body" <<'PY'
import re, sys
title, body = sys.argv[1], sys.argv[2].strip() + "\n"
text = open("RESULTS.md").read()
pattern = re.compile(r"^## " + re.escape(title) + r"\n.*?(?=^## |\Z)", re.S | re.M)
text = pattern.sub(lambda _: body + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + body
open("RESULTS.md", "w").write(text)
PY
