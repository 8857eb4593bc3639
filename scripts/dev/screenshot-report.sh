#!/usr/bin/env bash
# Screenshots a benchmark report (report.html), a loss plot (.svg/.html) or
# any local page with Debian's headless chromium, for a person to look at.
#
#   scripts/dev/screenshot-report.sh report/report.html [out.png] [width] [height]
#
# Needs chromium (Debian: apt-get install -y chromium). The page is opened
# from disk with networking off; nothing is fetched. The height defaults to
# one that fits the whole report; pass a smaller one for just the top.
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 PAGE.html|CHART.svg [OUT.png] [WIDTH] [HEIGHT]" >&2
  exit 2
fi
page=$1
out=${2:-${page%.*}.png}
width=${3:-1280}
height=${4:-}

if [ ! -f "$page" ]; then
  echo "$0: no such file: $page" >&2
  exit 1
fi

browser=""
for b in chromium chromium-browser google-chrome; do
  if command -v "$b" >/dev/null 2>&1; then browser=$b; break; fi
done
if [ -z "$browser" ]; then
  echo "$0: chromium not found; install it with: apt-get install -y chromium" >&2
  exit 1
fi

if [ -z "$height" ]; then
  # Tall enough for the whole page: report.json lists how many charts there are;
  # without it, a generous default.
  height=1600
  dir=$(dirname "$page")
  if [ -f "$dir/report.json" ] && [ "$(basename "$page")" = "report.html" ]; then
    height=$(node -e '
      const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      const rows = Object.values(r.sections || {}).reduce((n, s) => n + ((s && s.rows) ? s.rows.length : 0), 0);
      console.log(Math.min(16000, 2400 + 4 * 480 + rows * 24));
    ' "$dir/report.json" 2>/dev/null || echo 6000)
  fi
fi

abs_page=$(cd "$(dirname "$page")" && pwd)/$(basename "$page")
abs_out=$(cd "$(dirname "$out")" 2>/dev/null && pwd)/$(basename "$out")
profile=$(mktemp -d /tmp/gpt-engine-chromium.XXXXXX)
trap 'rm -rf "$profile"' EXIT

"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
  --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
  --user-data-dir="$profile" --window-size="$width,$height" \
  --screenshot="$abs_out" "file://$abs_page" >/dev/null 2>"$profile/chromium.log" || {
  echo "$0: chromium failed:" >&2
  tail -5 "$profile/chromium.log" >&2
  exit 1
}
if [ ! -s "$abs_out" ]; then
  echo "$0: chromium wrote no screenshot" >&2
  tail -5 "$profile/chromium.log" >&2
  exit 1
fi
echo "$abs_out"
