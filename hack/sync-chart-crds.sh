#!/usr/bin/env bash
# sync-chart-crds.sh - copy the CRDs (crds/*.yaml, the single source of truth) into the Helm
# chart's files/crds/ (templates/crds.yaml renders them), byte for byte, removing chart CRDs
# that no longer exist in crds/.
#
# Usage: hack/sync-chart-crds.sh [--check] [DEST]
#   (no flag)  make DEST equal to crds/ and say what changed
#   --check    change nothing; list every difference and exit 1 when DEST differs from crds/
#   DEST       default charts/tenancy-operator/files/crds
set -euo pipefail

HACK=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HACK/.." && pwd)
log() { printf '[sync-chart-crds %s] %s\n' "$(date +%T)" "$*" >&2; }

CHECK=0 DEST=
for a in "$@"; do
  case $a in
    --check) CHECK=1 ;;
    -h | --help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) log "unknown flag $a"; exit 2 ;;
    *) [ -z "$DEST" ] || { log "one DEST only"; exit 2; }; DEST=$a ;;
  esac
done
SRC=$ROOT/crds
DEST=${DEST:-$ROOT/charts/tenancy-operator/files/crds}

shopt -s nullglob
src_files=("$SRC"/*.yaml)
[ ${#src_files[@]} -gt 0 ] || { log "no CRDs in $SRC"; exit 2; }

diffs=0
if [ $CHECK = 0 ]; then mkdir -p "$DEST"; fi
for f in "${src_files[@]}"; do
  name=$(basename "$f")
  if [ ! -f "$DEST/$name" ]; then
    what="is missing"
  elif ! cmp -s "$f" "$DEST/$name"; then
    what="differs from crds/$name"
  else
    continue
  fi
  diffs=$((diffs + 1))
  if [ $CHECK = 1 ]; then
    log "$DEST/$name $what"
  else
    cp "$f" "$DEST/$name.tmp" && mv -f "$DEST/$name.tmp" "$DEST/$name"
    log "copied crds/$name (the chart copy $what)"
  fi
done
for f in "$DEST"/*; do
  name=$(basename "$f")
  [ -f "$SRC/$name" ] && continue
  diffs=$((diffs + 1))
  if [ $CHECK = 1 ]; then
    log "$DEST/$name has no counterpart in crds/"
  else
    rm -rf "$f"
    log "removed $name (not in crds/)"
  fi
done

if [ $CHECK = 1 ]; then
  if [ $diffs -gt 0 ]; then
    log "the chart's CRDs differ from crds/ in $diffs file(s): run hack/sync-chart-crds.sh"
    exit 1
  fi
  log "the chart's CRDs equal crds/ (${#src_files[@]} files)"
else
  log "$diffs change(s); the chart's CRDs equal crds/ (${#src_files[@]} files)"
fi
