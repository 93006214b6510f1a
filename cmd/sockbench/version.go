package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/sockbench/sockbench/bench"
)

// version and commit, when set at link time (-ldflags "-X main.version=...
// -X main.commit=..."), override what the Go toolchain stamped into the
// binary. make build, pi, release and the Dockerfile set them from git
// (or from VERSION= and COMMIT= given to make), because the toolchain
// stamps nothing where there is no .git directory to read: a build with
// -buildvcs=false (as GOFLAGS sets it in some environments), inside a git
// worktree (whose .git is a file), or from a tree without its history (a
// Docker build context). "dev" and "" mean not set.
var (
	version = ""
	commit  = ""
)

// buildVersion is what the running binary knows about the code it was
// built from. suite_version and commit in bench's results come from here,
// so a result names the same build `sockbench version` prints.
type buildVersion struct {
	// Version is the link-time version, else the module version Go
	// stamped (v1.2.3 from go install ...@v1.2.3, a pseudo-version such as
	// v0.0.0-20261201191432-2670927759a1 from go build in a git clone),
	// else "dev".
	Version string `json:"version"`
	// Commit is the link-time commit, else the first 12 hex digits of
	// the VCS revision Go stamped, with "-dirty" when tracked files had
	// changes; "" when the binary does not know (go install of a module
	// version carries no revision).
	Commit string `json:"commit"`
	// CommitTime is the stamped commit's time (RFC 3339), when Go
	// stamped one.
	CommitTime string `json:"commit_time,omitempty"`
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
}

// currentVersion describes this binary.
func currentVersion() buildVersion {
	bi, _ := debug.ReadBuildInfo()
	return resolveVersion(bi, version, commit)
}

// resolveVersion merges the link-time strings with the toolchain's build
// information (bi may be nil), the link-time ones first: they are given on
// purpose, and where both exist they agree.
func resolveVersion(bi *debug.BuildInfo, ldVersion, ldCommit string) buildVersion {
	v := buildVersion{Version: ldVersion, Commit: ldCommit, GoVersion: runtime.Version(),
		OS: runtime.GOOS, Arch: runtime.GOARCH}
	if v.Version == "dev" {
		v.Version = ""
	}
	if bi != nil {
		if v.Version == "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version
		}
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			case "vcs.time":
				v.CommitTime = s.Value
			}
		}
		if v.Commit == "" && rev != "" {
			v.Commit = rev[:min(len(rev), 12)]
			if modified == "true" {
				v.Commit += "-dirty"
			}
		}
	}
	if v.Version == "" {
		v.Version = "dev"
	}
	return v
}

// String is the one line `sockbench version` and --version print.
func (v buildVersion) String() string {
	rev := "commit unknown (built without VCS information: use make build, or go build in a git clone)"
	if v.Commit != "" {
		rev = "commit " + v.Commit
		if v.CommitTime != "" {
			rev += " (" + v.CommitTime + ")"
		}
	}
	return fmt.Sprintf("sockbench %s, %s, %s %s/%s", v.Version, rev, v.GoVersion, v.OS, v.Arch)
}

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version and commit this binary was built from",
		Long: `version prints the version and the commit this binary was built from, as bench
records them in its results (suite_version, commit), with the Go version and
platform. --version prints the same line.`,
		Example: `  sockbench version
  sockbench version --json`,
		Args: argsError(cobra.NoArgs, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return writeVersion(cmd.OutOrStdout(), currentVersion(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object (version, commit, commit_time, go_version, os, arch)")
	return cmd
}

// writeVersion prints v as its one line, or as JSON.
func writeVersion(w io.Writer, v buildVersion, asJSON bool) error {
	if !asJSON {
		_, err := fmt.Fprintln(w, v)
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// benchEnv is the build identity bench records (suite_version, commit):
// what `sockbench version` prints, and when the binary does not know its
// commit, the commit of the checkout bench runs in (a guess, but the
// likely one for go run or a -buildvcs=false build there), else "".
func benchEnv() bench.Env {
	v := currentVersion()
	if v.Commit == "" {
		v.Commit = bench.RepoCommit()
	}
	return bench.Env{SuiteVersion: v.Version, Commit: v.Commit}
}
