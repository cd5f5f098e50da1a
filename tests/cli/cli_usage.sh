#!/usr/bin/env bash
# cli.cli_usage: the command line's contract, table-driven, without servers:
#   `atrest help` lists every command and each listed command is in the
#   table below; every command and subcommand answers --help on stdout with
#   exit 0 and nothing on stderr (`atrest help CMD` too); an unknown flag is
#   a usage error: exit 2, nothing on stdout, one line naming the flag and a
#   pointer to --help on stderr; a group without its verb exits 2.
set -euo pipefail
bin=${1:?usage: cli_usage.sh path/to/atrest}
tmp=$(mktemp -d /tmp/atr-usage-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
# no settings from the caller: a profile could otherwise be read
for v in $(env | sed -n 's/^\(ATREST_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
cd "$tmp"

# every subcommand, as words
subcommands=(
    "cert"
    "echo"
    "dev"
    "serve"
    "srk rotate"
    "idp serve"
    "idp directory create"
    "idp directory list"
    "idp app create"
    "idp app add-secret"
    "idp app add-key"
    "idp sp create"
    "idp sp list"
    "idp sp enable"
    "idp sp disable"
    "idp sp show"
    "idp sp delete"
    "idp sp grant"
    "idp keys list"
    "idp keys rotate"
    "idp token"
    "vault serve"
    "vault create"
    "vault update"
    "vault show"
    "vault list"
    "vault policy"
    "vault firewall"
    "vault faults"
    "vault clock"
    "vault key list"
    "vault key create"
    "vault key show"
    "vault key versions"
    "vault key rotate"
    "vault key delete"
    "vault key recover"
    "vault key purge"
    "vault key import"
    "vault key update"
    "vault key rotation-policy get"
    "vault key rotation-policy set"
    "records ingest"
    "records query"
    "encryption status"
    "encryption enable"
    "encryption disable"
    "encryption audit"
    "monitor run"
)
# groups: --help works on the group too, and the group alone is a usage error
groups=("idp" "idp directory" "idp app" "idp sp" "idp keys" "vault" "vault key"
    "vault key rotation-policy" "records" "encryption" "monitor" "srk")

# run WORDS... -> $rc, $t/out, $t/err
run() {
    set +e
    "$bin" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    set -e
}

echo "--- atrest help lists every command"
run help
[ "$rc" -eq 0 ] && [ -s "$tmp/out" ] || fail "atrest help: exit $rc"
mapfile -t listed < <(sed -n 's/^  \([a-z]\+\) .*/\1/p' "$tmp/out")
[ "${#listed[@]}" -ge 12 ] || fail "atrest help lists ${#listed[@]} commands: $(cat "$tmp/out")"
for c in "${listed[@]}"; do
    [ "$c" = help ] || [ "$c" = version ] && continue
    found=0
    for s in "${subcommands[@]}" "${groups[@]}"; do
        [ "${s%% *}" = "$c" ] && found=1
    done
    [ $found = 1 ] || fail "'$c' is listed by atrest help but not in this test's table"
done
for w in version "help help" "help encryption" "help vault"; do
    # shellcheck disable=SC2086
    run $w
    [ "$rc" -eq 0 ] && [ -s "$tmp/out" ] || fail "atrest $w: exit $rc"
done
run version --bogus
[ "$rc" -eq 2 ] || fail "version --bogus: exit $rc"
run help no-such-command
[ "$rc" -eq 2 ] || fail "help no-such-command: exit $rc"

echo "--- every subcommand: --help exits 0, a bad flag exits 2"
n=0
for s in "${subcommands[@]}" "${groups[@]}"; do
    read -r -a words <<<"$s"
    run "${words[@]}" --help
    [ "$rc" -eq 0 ] || fail "'atrest $s --help' exited $rc: $(cat "$tmp/err")"
    [ -s "$tmp/out" ] || fail "'atrest $s --help' printed nothing"
    [ ! -s "$tmp/err" ] || fail "'atrest $s --help' wrote to stderr: $(cat "$tmp/err")"
    grep -qi 'usage' "$tmp/out" || fail "'atrest $s --help' has no usage line"
    n=$((n + 1))
done
for s in "${subcommands[@]}"; do
    read -r -a words <<<"$s"
    run "${words[@]}" --no-such-flag
    [ "$rc" -eq 2 ] || fail "'atrest $s --no-such-flag' exited $rc, want 2: $(cat "$tmp/err")"
    [ ! -s "$tmp/out" ] || fail "'atrest $s --no-such-flag' wrote to stdout: $(cat "$tmp/out")"
    head -n1 "$tmp/err" | grep -q -- "^atrest .*--no-such-flag" ||
        fail "'atrest $s --no-such-flag': first line $(head -n1 "$tmp/err")"
    grep -q -- '--help' "$tmp/err" || fail "'atrest $s --no-such-flag' does not point to --help"
    [ "$(wc -l <"$tmp/err")" -le 2 ] || fail "'atrest $s --no-such-flag' printed more than 2 lines"
    n=$((n + 1))
done
for s in "${groups[@]}"; do
    read -r -a words <<<"$s"
    run "${words[@]}"
    [ "$rc" -eq 2 ] || fail "'atrest $s' without a verb exited $rc, want 2"
    run "${words[@]}" no-such-verb
    [ "$rc" -eq 2 ] || fail "'atrest $s no-such-verb' exited $rc, want 2"
    n=$((n + 2))
done

echo "--- usage errors of the client commands need no server"
usage_errors=(
    "records ingest --from 2026"       # an option of another verb
    "records query extra"              # a stray argument
    "encryption enable"                # neither --key-uri nor --from
    "encryption enable --key-uri x --from f"
    "encryption status --yes"          # --yes is for disable
    "encryption status --token-dir d"  # --token-dir goes with --from
    "encryption audit --limit 0"
    "vault key show"                   # no name
    "vault key create a b"             # two names
    "vault key create bad_name"        # not a key name
    "vault key create k --size 1000"
    "vault key update k --exp soon"
    "vault key rotate k --version 1"   # an option of another verb
    "vault key list --yes"
    "vault key rotation-policy drop k"
    "monitor run --advance -1"
    "monitor run"                      # no service URL
    "encryption status"                # no service URL
)
for s in "${usage_errors[@]}"; do
    read -r -a words <<<"$s"
    run "${words[@]}"
    [ "$rc" -eq 2 ] || fail "'atrest $s' exited $rc, want 2: $(cat "$tmp/err")"
    grep -q -- '--help' "$tmp/err" || fail "'atrest $s' does not point to --help: $(cat "$tmp/err")"
    n=$((n + 1))
done
echo "cli.cli_usage: ok ($n cases)"
