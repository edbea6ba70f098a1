# Per-test timeout. ./check has none, and a test stuck in the filesystem
# would stall the whole run. Sourced by run, which starts sfs_watchdog in
# the background.

# sfs_running_tests CHECK_PID: "PID TEST ELAPSED_SECONDS" for each test
# script ./check is running (check execs each as `bash [PATH/]tests/DIR/NAME`).
sfs_running_tests() {
	local pid argv
	declare -A test_of=() parent_of=()
	for pid in $(sfs_descendants "$1"); do
		mapfile -d "" -t argv 2>/dev/null < "/proc/$pid/cmdline" || continue
		((${#argv[@]} >= 2)) || continue
		[[ "${argv[0]##*/}" == bash && "${argv[1]}" =~ (^|/)tests/([a-z0-9_-]+/[0-9A-Za-z_-]+)$ ]] || continue
		test_of[$pid]=${BASH_REMATCH[2]}
		parent_of[$pid]=$(ps -o ppid= -p "$pid" | tr -d ' ')
	done
	# A test's subshells run the same script; report only the top one.
	for pid in "${!test_of[@]}"; do
		[[ -n "${test_of[${parent_of[$pid]:-0}]+x}" ]] && continue
		echo "$pid ${test_of[$pid]} $(ps -o etimes= -p "$pid" | tr -d ' ')"
	done
}

# sfs_watchdog CHECK_PID TIMEOUT RESULT_BASE MOUNT...: while CHECK_PID
# lives, kill any test running longer than TIMEOUT seconds (the test and
# everything it started), and record it in RESULT_BASE/glue-timeouts so the
# summary can say why it failed. If its processes survive SIGKILL they are
# stuck in a FUSE request: abort the connections of MOUNT... so they get
# ENOTCONN; check then unmounts, and the next test mounts afresh.
sfs_watchdog() {
	local check_pid=$1 timeout=$2 results=$3
	shift 3
	local mounts=("$@") pid test age
	while kill -0 "$check_pid" 2>/dev/null; do
		while read -r pid test age; do
			[[ -n "$pid" && "$age" -gt "$timeout" ]] || continue
			echo "$test $timeout" >> "$results/glue-timeouts"
			echo "xfstests-glue: $test ran longer than ${timeout}s; killing it" >&2
			sfs_kill_tree "$pid" TERM
			sfs_wait_gone 30 "$pid" && continue
			sfs_kill_tree "$pid" KILL
			sfs_wait_gone 30 "$pid" && continue
			echo "xfstests-glue: $test is stuck in the filesystem; aborting the FUSE connections" >&2
			echo "$test aborted-fuse" >> "$results/glue-timeouts"
			local m
			for m in $(sfs_mounts_at "${mounts[@]}"); do sfs_abort_fuse "$m"; done
			sfs_wait_gone 30 "$pid"
		done < <(sfs_running_tests "$check_pid")
		# A timer, not synchronisation: the granularity of the timeout.
		sleep "${SFS_WATCHDOG_INTERVAL:-5}"
	done
}
