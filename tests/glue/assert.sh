# Tiny assertion helpers for the glue's shell tests. Each failed expectation
# prints the test case and the line; finish exits non-zero if any failed.
failures=0
current="(none)"
begin() { current=$1; echo "[ RUN      ] $current"; }
fail() {
	echo "  FAILED in $current (line ${BASH_LINENO[1]}): $*"
	failures=$((failures + 1))
}
expect_eq() { [[ "$1" == "$2" ]] || fail "expected '$1', got '$2'"; }
expect_ne() { [[ "$1" != "$2" ]] || fail "expected anything but '$1'"; }
expect_status() { [[ "$1" == "$2" ]] || fail "expected exit status $1, got $2"; }
expect_contains() { [[ "$1" == *"$2"* ]] || fail "output lacks '$2':"$'\n'"$1"; }
expect_not_contains() { [[ "$1" != *"$2"* ]] || fail "output has '$2':"$'\n'"$1"; }
# A subshell's failure count, passed back as its exit status.
record_subshell() { failures=$((failures + $1)); }
finish() {
	if ((failures)); then echo "$failures expectation(s) FAILED"; exit 1; fi
	echo "all expectations met"
	exit 0
}
