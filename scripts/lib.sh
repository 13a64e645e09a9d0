# The scripts' shared helpers. Source it after setting SCRIPT_NAME (the prefix of every message):
#   SCRIPT_NAME=bootstrap; . "$REPO/scripts/lib.sh"
# say MSG...            progress on stdout, prefixed
# die MSG...            the error on stderr, prefixed, exit 1
# run LOG CMD...        append CMD's output to LOG; quiet unless it fails, then its tail and die
# stamp_ok FILE KEY     FILE holds exactly KEY (a step's inputs when it last succeeded)
# fingerprint FILE...   a short hash of the files' contents, for stamps
# version_ge A B        version A >= version B (sort -V)

say() { printf '%s: %s\n' "${SCRIPT_NAME:?}" "$*"; }
die() { printf '%s: ERROR: %s\n' "${SCRIPT_NAME:?}" "$*" >&2; exit 1; }
run() {
  local logf="$1"; shift
  printf '$ %s\n' "$*" >>"$logf"
  if ! "$@" >>"$logf" 2>&1; then
    tail -n 40 "$logf" >&2
    die "failed: $* (full log: $logf)"
  fi
}
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
fingerprint() { cat "$@" | sha256sum | cut -c1-16; }
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }
