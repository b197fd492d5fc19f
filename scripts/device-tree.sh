#!/usr/bin/env bash
# The working tree that travels to a lent GPU machine is limited to 64 MiB, and the test
# fixtures alone are larger. This takes every fixture the device check does not name out of
# git's index for the call (the files stay on disk, ignored through .git/info/exclude), and puts
# them back afterwards. Nothing is committed; `restore` leaves the index as HEAD has it.
#
#   scripts/device-tree.sh take-out llama,phi3,qwen2_moe   # tiny models to keep, before the call
#   scripts/device-tree.sh restore                         # after it
set -euo pipefail
cd "$(dirname "$0")/.."
exclude=.git/info/exclude
backup=.git/info/exclude.device-tree
case "${1:-}" in
  take-out)
    [ -f "$backup" ] && { echo "already taken out; run: $0 restore" >&2; exit 1; }
    keep=",${2:?name the tiny models to keep, comma-separated},"
    drop=(tests/fixtures/gguf tests/fixtures/pytorch tests/fixtures/demo)
    for dir in tests/fixtures/tiny/*/; do
      name=$(basename "$dir")
      [[ $keep == *",$name,"* ]] || drop+=("tests/fixtures/tiny/$name")
    done
    # A fresh clone has no .git/info/exclude: start from an empty one.
    mkdir -p "$(dirname "$exclude")" && touch "$exclude"
    cp "$exclude" "$backup"
    printf '/%s/\n' "${drop[@]}" >>"$exclude"
    git rm -r -q --cached "${drop[@]}"
    bytes=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 du -cb | tail -n 1 | cut -f1)
    echo "the tree that travels: $((bytes / 1048576)) MiB, plus what the call carries"
    ;;
  restore)
    [ -f "$backup" ] || { echo "nothing taken out" >&2; exit 1; }
    git reset -q -- tests/fixtures
    mv "$backup" "$exclude"
    git status --short -- tests/fixtures
    echo "restored"
    ;;
  *)
    echo "usage: $0 take-out MODEL[,MODEL…] | restore" >&2
    exit 2
    ;;
esac
