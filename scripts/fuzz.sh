#!/usr/bin/env bash
# Fuzzes faultline's readers of untrusted bytes with AFL++ (through cargo-afl) for a bounded time:
# the JSON row decoder (bus messages), the CSV reader (uploads, `faultline score`) and the label
# readers. The targets and their invariants are in fuzz/ (a crate of its own, outside the main
# build); seeds in fuzz/seeds/<target>/, dictionaries in fuzz/dict/.
#
# Fails (exit 1) when a target crashes (a panic, including a broken invariant) or hangs, naming the
# inputs, which stay in target/fuzz/out/<target>/default/{crashes,hangs}/; replay one with
# `target/fuzz/release/<target> < FILE`.
#
#   FAULTLINE_FUZZ_SECONDS=60   seconds per target (afl-fuzz -V)
#   FAULTLINE_FUZZ_TARGETS="json_rows csv_rows labels"   which targets
#   FAULTLINE_SKIP_FUZZ=1       skip it all
#
# Everything stays in the repository: cargo-afl in target/tools (built once, about a minute on
# 2 cores, AFL++ included), AFL++ under target/tools/share/afl.rs (cargo-afl puts it under
# $XDG_DATA_HOME, ~/.local/share by default), the instrumented build and the findings in
# target/fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [[ "${FAULTLINE_SKIP_FUZZ:-0}" == 1 ]]; then
  echo "== fuzzing: SKIPPED (FAULTLINE_SKIP_FUZZ=1)"
  exit 0
fi

afl_version=0.18.2 # cargo-afl; keep equal to the afl crate's version in fuzz/Cargo.lock
seconds=${FAULTLINE_FUZZ_SECONDS:-60}
read -r -a targets <<< "${FAULTLINE_FUZZ_TARGETS:-json_rows csv_rows labels}"
tools=$root/target/tools
export XDG_DATA_HOME=$tools/share PATH=$tools/bin:$PATH CARGO_TARGET_DIR=$root/target/fuzz

if [[ "$(cargo afl --version 2>/dev/null)" != "cargo-afl $afl_version "* ]]; then
  echo "== installing cargo-afl $afl_version (and building AFL++) into target/tools (first run only)"
  t0=$SECONDS
  cargo install --quiet --locked --root "$tools" --target-dir "$root/target/cargo-afl-build" \
    cargo-afl --version "$afl_version"
  echo "   installed in $((SECONDS - t0)) s"
fi

# cargo-afl builds AFL++ and its runtime per rustc version; the install above already did for this
# one, so this only builds after a toolchain change.
t0=$SECONDS
if ! out=$(cargo afl config --build 2>&1); then
  if [[ $out != *"already built"* ]]; then
    echo "$out" >&2
    echo "cargo afl config --build failed (it needs make and a C compiler)" >&2
    exit 1
  fi
else
  echo "== built AFL++ for $(rustc --version) in $((SECONDS - t0)) s"
fi
echo "== $(cargo afl --version)"

echo "== building the fuzz targets (instrumented, release) into target/fuzz"
t0=$SECONDS
if ! cargo afl build --release --locked --manifest-path fuzz/Cargo.toml --bins; then
  echo "building the fuzz targets failed; if fuzz/Cargo.lock is out of date with faultline's" \
    "dependencies, run: cargo update --manifest-path fuzz/Cargo.toml -p faultline" >&2
  exit 1
fi
echo "   built in $((SECONDS - t0)) s"

# Non-interactive, container-friendly afl-fuzz: no UI, no CPU pinning or frequency checks, no
# core_pattern demands. A seed that crashes or hangs stops it with an error naming the seed
# (AFL++ would otherwise skip that seed with a warning and go on).
export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
  AFL_EXIT_ON_SEED_ISSUES=1 AFL_FORKSRV_INIT_TMOUT=60000

stat_of() { sed -n "s/^$1 *: //p" "$2"; }
# Runs target $1 on input $2 outside AFL++ and shows what it said (the panic, if any).
replay() {
  echo "   replay: target/fuzz/release/$1 < '${2#"$root"/}'; it says:" >&2
  { RUST_BACKTRACE=0 timeout 20 "$CARGO_TARGET_DIR/release/$1" < "$2" > "$out/replay.txt" 2>&1; } 2>/dev/null ||
    echo "exit status $?" >> "$out/replay.txt"
  { grep -a -A3 'panicked at' "$out/replay.txt" || tail -n 5 "$out/replay.txt"; } | grep -v '^note: ' |
    sed 's/^/   | /' >&2 || true
}
failed=()
summary=()
# The targets fuzz at once, each for $seconds: AFL++ runs one process a target, and the
# machine's cores are shared among them (AFL_NO_AFFINITY; on 2 cores each target gets about 2/3
# of one), so three targets take $seconds rather than three times that.
declare -A fuzzing
for t in "${targets[@]}"; do
  out=$CARGO_TARGET_DIR/out/$t
  rm -rf "$out"
  mkdir -p "$out"
  dict=()
  [[ -f fuzz/dict/$t.dict ]] && dict=(-x "$root/fuzz/dict/$t.dict")
  echo "== fuzzing $t for $seconds s (seeds: fuzz/seeds/$t, log: target/fuzz/out/$t.log)"
  # -t: 1 s per input, far above any decode time, so a busy machine does not make false hangs.
  cargo afl fuzz -V "$seconds" -t 1000 -i "$root/fuzz/seeds/$t" -o "$out" "${dict[@]}" \
    -- "$CARGO_TARGET_DIR/release/$t" > "$out.log" 2>&1 &
  fuzzing[$t]=$!
done
for t in "${targets[@]}"; do
  out=$CARGO_TARGET_DIR/out/$t
  if ! wait "${fuzzing[$t]}"; then
    { grep -a -E "Test case|PROGRAM ABORT|Location" "$out.log" || tail -n 30 "$out.log"; } |
      sed 's/\x1b\[[0-9;]*m//g' >&2
    echo "!! afl-fuzz failed on $t (log: target/fuzz/out/$t.log)" >&2
    seed=$(sed -n "s/.*Test case '[^']*orig:\([^']*\)' results in a.*/\1/p" "$out.log" | head -n 1)
    [[ -n $seed && -f fuzz/seeds/$t/$seed ]] && replay "$t" "$root/fuzz/seeds/$t/$seed"
    failed+=("$t: afl-fuzz failed${seed:+ on seed fuzz/seeds/$t/$seed}")
    continue
  fi
  stats=$out/default/fuzzer_stats
  line=$(printf '%-10s execs %-9s execs/s %-8s paths found %-5s corpus %-5s stability %-8s crashes %s hangs %s' \
    "$t" "$(stat_of execs_done "$stats")" "$(stat_of execs_per_sec "$stats")" "$(stat_of corpus_found "$stats")" \
    "$(stat_of corpus_count "$stats")" "$(stat_of stability "$stats")" "$(stat_of saved_crashes "$stats")" \
    "$(stat_of saved_hangs "$stats")")
  echo "   $line"
  summary+=("$line")
  mapfile -t bad < <(find "$out/default/crashes" "$out/default/hangs" -type f -name 'id:*' 2>/dev/null | sort)
  if ((${#bad[@]})); then
    echo "!! $t: ${#bad[@]} crashing or hanging input(s):" >&2
    for f in "${bad[@]}"; do echo "   ${f#"$root"/}" >&2; done
    replay "$t" "${bad[0]}"
    failed+=("$t: ${#bad[@]} crashing or hanging input(s)")
  fi
done

echo "== fuzzing summary ($seconds s, the targets at once)"
for line in "${summary[@]}"; do echo "   $line"; done
if ((${#failed[@]})); then
  printf '!! %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "== fuzzing: no crash and no hang in ${#targets[@]} target(s)"
