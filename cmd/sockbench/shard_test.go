package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadShardFlags(t *testing.T) {
	target := "--target=tcp://127.0.0.1:9"
	for _, args := range [][]string{
		{"load", target, "--shard", "2/2"},
		{"load", target, "--shard", "x"},
		{"load", target, "--shard", "0/4", "-c", "3"},
		{"load", target, "--shard", "0/4", "-c", "8", "-n", "3"},
		{"load", target, "--start-at", "tomorrow"},
		{"load", target, "--start-at", "2001-01-01T00:00:00Z"},
		{"load", target, "--hdr-interval", "-1s"},
	} {
		code, stdout, stderr := runBin(t, 10*time.Second, args...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != 2 || stdout != "" || len(lines) != 1 || !strings.HasPrefix(lines[0], "sockbench: ") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and one line", args, code, stdout, stderr)
		}
	}
}

// TestMergeRefusesDisjointWindows: two runs one after the other measured
// different times; merge says so in one line and exits 1.
func TestMergeRefusesDisjointWindows(t *testing.T) {
	target := upperServer(t)
	dir := shortTempDir(t)
	var logs []string
	for _, name := range []string{"first.hlog", "second.hlog"} {
		hlog := filepath.Join(dir, name)
		code, _, stderr := runBin(t, 20*time.Second, "load", "--target", target, "--mode", "upper", "-c", "2",
			"-d", "200ms", "--warmup", "0", "--format", "json", "--hdr-out", hlog, "--shard", "0/2")
		if code != 0 {
			t.Fatalf("load: exit %d: %s", code, stderr)
		}
		logs = append(logs, hlog)
	}
	if b, err := os.ReadFile(logs[0]); err != nil || !strings.Contains(string(b), `"shard":"0/2"`) {
		t.Errorf("the log does not name its shard (%v)", err)
	}
	code, stdout, stderr := runBin(t, 10*time.Second, append([]string{"merge"}, logs...)...)
	if code != 1 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "do not overlap") {
		t.Fatalf("merge: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
