package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func TestResolveVersion(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev},
			{Key: "vcs.time", Value: "2026-12-01T19:14:32Z"}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "2670927759a1238f4b1526a4d76cac1a699ff9d4"
	for _, c := range []struct {
		name                 string
		bi                   *debug.BuildInfo
		ldVersion, ldCommit  string
		version, commit, day string
	}{
		{name: "no build info", version: "dev"},
		{name: "-buildvcs=false", bi: &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, ldVersion: "dev", version: "dev"},
		{name: "go install @version", bi: &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, version: "v1.2.3"},
		{name: "go build in a clone",
			bi:      &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261201191432-2670927759a1"}, Settings: vcs(rev, "false")},
			version: "v0.0.0-20261201191432-2670927759a1", commit: "2670927759a1", day: "2026-12-01T19:14:32Z"},
		{name: "go build in a changed clone",
			bi:      &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261201191432-2670927759a1+dirty"}, Settings: vcs(rev, "true")},
			version: "v0.0.0-20261201191432-2670927759a1+dirty", commit: "2670927759a1-dirty", day: "2026-12-01T19:14:32Z"},
		{name: "make pi (ldflags only)", bi: &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			ldVersion: "v0.3.0-2-g2670927", ldCommit: "2670927759a1", version: "v0.3.0-2-g2670927", commit: "2670927759a1"},
		{name: "make build in a clone (both; ldflags first)",
			bi:        &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261201191432-2670927759a1"}, Settings: vcs(rev, "false")},
			ldVersion: "2670927", ldCommit: "2670927759a1", version: "2670927", commit: "2670927759a1", day: "2026-12-01T19:14:32Z"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := resolveVersion(c.bi, c.ldVersion, c.ldCommit)
			if v.Version != c.version || v.Commit != c.commit || v.CommitTime != c.day {
				t.Errorf("got version %q commit %q time %q, want %q %q %q", v.Version, v.Commit, v.CommitTime, c.version, c.commit, c.day)
			}
			line := v.String()
			if !strings.HasPrefix(line, "sockbench "+c.version+", ") || strings.Contains(line, "\n") {
				t.Errorf("line %q", line)
			}
			if c.commit == "" && !strings.Contains(line, "commit unknown") {
				t.Errorf("line %q does not say the commit is unknown", line)
			}
			if c.commit != "" && !strings.Contains(line, "commit "+c.commit) {
				t.Errorf("line %q does not name commit %s", line, c.commit)
			}
		})
	}
}

// TestVersionCommand checks `version`, `version --json` and --version
// print one identity, from a binary stamped as make stamps it, and that
// bench records the same.
func TestVersionCommand(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(shortTempDir(t), "sockbench")
	out, err := exec.Command("go", "build", "-ldflags", "-X main.version=v9.8.7 -X main.commit=0123456789ab", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			t.Fatalf("sockbench %s: %v", strings.Join(args, " "), err)
		}
		return string(out)
	}
	line := run("version")
	if !strings.HasPrefix(line, "sockbench v9.8.7, commit 0123456789ab") || strings.Count(line, "\n") != 1 {
		t.Errorf("version printed %q", line)
	}
	if got := run("--version"); got != line {
		t.Errorf("--version printed %q, version %q", got, line)
	}
	var v buildVersion
	if err := json.Unmarshal([]byte(run("version", "--json")), &v); err != nil {
		t.Fatal(err)
	}
	if v.Version != "v9.8.7" || v.Commit != "0123456789ab" || v.GoVersion == "" || v.OS == "" || v.Arch == "" {
		t.Errorf("version --json: %+v", v)
	}
}

func TestVersionBadArgs(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runBin(t, 30*time.Second, "version", "now")
	if code != exitUsage || stdout != "" || !strings.Contains(stderr, "version needs no arguments") {
		t.Errorf("version now: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestBenchEnvIsVersion checks bench records what version prints.
func TestBenchEnvIsVersion(t *testing.T) {
	oldV, oldC := version, commit
	t.Cleanup(func() { version, commit = oldV, oldC })
	version, commit = "v9.8.7", "0123456789ab"
	e := benchEnv()
	if e.SuiteVersion != "v9.8.7" || e.Commit != "0123456789ab" {
		t.Errorf("bench records suite_version %q commit %q, version says v9.8.7 0123456789ab", e.SuiteVersion, e.Commit)
	}
}
