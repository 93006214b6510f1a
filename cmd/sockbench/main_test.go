package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestCommandTree: every command is built by its own function into a
// fresh tree, the ones a user starts from show examples, and two trees
// share nothing (run builds one per call).
func TestCommandTree(t *testing.T) {
	a, b := newRootCmd(), newRootCmd()
	if a == b || a.Commands()[0] == b.Commands()[0] {
		t.Fatal("two trees share commands")
	}
	want := map[string]bool{"serve": true, "load": true, "merge": true, "bench": true, "compare": true, "report": true, "version": true, "completion": false, "help": false, "agent": false}
	for _, c := range a.Commands() {
		needExample, known := want[c.Name()]
		if !known {
			t.Errorf("unexpected command %s", c.Name())
			continue
		}
		delete(want, c.Name())
		if needExample && !strings.Contains(c.Example, "sockbench "+c.Name()) {
			t.Errorf("%s --help has no examples", c.Name())
		}
	}
	delete(want, "help") // cobra adds it when Execute runs
	if len(want) > 0 {
		t.Errorf("missing commands: %v", want)
	}
}

// TestCompletion: the shell completes the values of the flags that take a
// closed set (models, transports, modes, profiles, formats, metrics).
func TestCompletion(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--model", ""}, "bare eventloop prefork threaded"},
		{[]string{"serve", "--net", "tcp"}, "tcp tcp4 tcp6"},
		{[]string{"serve", "--mode", ""}, "echo upper"},
		{[]string{"serve", "--spawn", "p"}, "pool per-conn"},
		{[]string{"load", "--mode", "u"}, "upper"},
		{[]string{"load", "--format", ""}, "text json csv"},
		{[]string{"load", "--target", "unix"}, "unix:// unixgram://"},
		{[]string{"merge", "--format", "j"}, "json"},
		{[]string{"bench", "--profile", ""}, "full pi quick"},
		{[]string{"compare", "a", "b", "--metrics", "p9"}, "p99_us p999_us"},
	} {
		root := newRootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&bytes.Buffer{})
		root.SetArgs(append([]string{"__complete"}, c.args...))
		if err := root.Execute(); err != nil {
			t.Fatalf("%q: %v", c.args, err)
		}
		var got []string
		for _, l := range strings.Split(out.String(), "\n") {
			if l != "" && !strings.HasPrefix(l, ":") {
				got = append(got, l)
			}
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("complete %q = %q, want %q", c.args, got, c.want)
		}
	}
	// The script goes to the real stdout (cobra binds it when the tree is
	// built): run the binary.
	code, stdout, stderr := runBin(t, 20*time.Second, "completion", "bash")
	if code != 0 || stderr != "" || !strings.Contains(stdout, "__start_sockbench") {
		t.Errorf("completion bash: exit %d, %d bytes, stderr %q", code, len(stdout), stderr)
	}
}

// TestUsageErrors: everything the command line gets wrong exits 2 with
// one line, whether cobra, pflag or sockbench refused it.
func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"nosuch"}, `unknown command "nosuch"`},
		{[]string{"repot"}, "did you mean report?"},
		{[]string{"compare", "a"}, "compare needs BASE and NEW"},
		{[]string{"report"}, "report needs one or more"},
		{[]string{"bench", "extra"}, "bench needs no arguments"},
		{[]string{"serve", "--workers", "1.5"}, `"--workers" flag: want a whole number`},
		{[]string{"load", "-p", "x"}, `"-p, --pipeline" flag: want a whole number`},
		{[]string{"load", "--rate", "fast"}, `"--rate" flag: want a number`},
		{[]string{"bench", "--no-pin=maybe"}, `"--no-pin" flag: want true or false`},
		{[]string{"load", "--timeout", "5"}, `"--timeout" flag: want a duration`},
		{[]string{"serve", "--mode", "shout"}, `unknown mode "shout"`},
		{[]string{"serve", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"completion", "bash", "x"}, "sockbench completion bash --help"},
	} {
		root := newRootCmd()
		root.SetArgs(c.args)
		root.SetOut(&bytes.Buffer{})
		err := root.Execute()
		if _, ok := err.(usageError); !ok || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %T %v, want a usage error saying %q", c.args, err, err, c.want)
		}
	}
}
