package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The Dockerfile cannot be built where no Docker engine runs (make docker
// says so and builds nothing), so this test checks what can be checked
// without one: the stages, the non-root user, that the final stage copies
// the binary the build stage made and runs it, and that the build command
// is the Makefile's static cross-build (CROSS, LDFLAGS) so the image's
// binary is built as the release binaries are.

// dockerInstr is one Dockerfile instruction.
type dockerInstr struct {
	line int    // 1-based line where it starts
	cmd  string // upper case: FROM, RUN, ...
	args string // the rest, continuation lines joined
}

// parseDockerfile splits a Dockerfile into instructions: comments and
// blank lines dropped, lines ending in a backslash joined to the next.
func parseDockerfile(text string) ([]dockerInstr, error) {
	var out []dockerInstr
	var cur strings.Builder
	start := 0
	for i, l := range strings.Split(text, "\n") {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if s, ok := strings.CutSuffix(t, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(t)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, dockerInstr{start, strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("line %d: continuation runs past the end", start)
	}
	return out, nil
}

// shellWords splits a command line into words, honouring single and
// double quotes (enough for the build commands compared here).
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	in, quote := false, rune(0)
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			w.WriteRune(r)
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, w.String())
				w.Reset()
				in = false
			}
		default:
			w.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote in %q", quote, s)
	}
	if in {
		words = append(words, w.String())
	}
	return words, nil
}

// makeVars reads the Makefile's simple variable definitions (NAME := v,
// NAME = v, NAME ?= v).
func makeVars(text string) map[string]string {
	vars := map[string]string{}
	re := regexp.MustCompile(`^([A-Z_]+)\s*(?::=|\?=|=)\s*(.*)$`)
	for _, l := range strings.Split(text, "\n") {
		if m := re.FindStringSubmatch(l); m != nil {
			vars[m[1]] = m[2]
		}
	}
	return vars
}

var makeRef = regexp.MustCompile(`\$[({]([A-Za-z_]+)[)}]`)

// expandMake expands $(NAME) from vars, writing the variables a build
// is given (VERSION, COMMIT) as $NAME and $(GO) as go.
func expandMake(s string, vars map[string]string, depth int) string {
	return makeRef.ReplaceAllStringFunc(s, func(ref string) string {
		name := makeRef.FindStringSubmatch(ref)[1]
		switch {
		case name == "GO":
			return "go"
		case name == "VERSION" || name == "COMMIT":
			return "$" + name
		case depth < 8 && vars[name] != "":
			return expandMake(vars[name], vars, depth+1)
		}
		return ref
	})
}

func readRepoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	instrs, err := parseDockerfile(readRepoFile(t, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	// Stages: instructions after each FROM, and the stage names.
	type stage struct {
		name   string
		from   dockerInstr
		instrs []dockerInstr
	}
	var stages []*stage
	for _, in := range instrs {
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			s := &stage{from: in}
			if n := len(f); n >= 3 && strings.EqualFold(f[n-2], "AS") {
				s.name = f[n-1]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("Dockerfile:%d: %s before the first FROM", in.line, in.cmd)
			}
			continue
		}
		stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stage(s); want a build stage and a run stage", len(stages))
	}
	final := stages[len(stages)-1]

	// The final stage copies the binary from an earlier named stage, runs
	// it as its entry point, and as a user that is not root.
	var copySrc, copyDst, user string
	var build *stage
	var entry []string
	for _, in := range final.instrs {
		switch in.cmd {
		case "COPY":
			f := strings.Fields(in.args)
			if len(f) == 3 && strings.HasPrefix(f[0], "--from=") {
				for _, s := range stages[:len(stages)-1] {
					if s.name != "" && s.name == strings.TrimPrefix(f[0], "--from=") {
						build, copySrc, copyDst = s, f[1], f[2]
					}
				}
			}
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.args), &entry); err != nil {
				t.Errorf("Dockerfile:%d: ENTRYPOINT %s: want the exec form, a JSON array (%v)", in.line, in.args, err)
			}
		}
	}
	if build == nil {
		t.Fatalf("the final stage (Dockerfile:%d) has no COPY --from=<build stage> SRC DST", final.from.line)
	}
	if name, _, _ := strings.Cut(user, ":"); name == "" || name == "root" || name == "0" {
		t.Errorf("the final stage runs as %q; want a USER that is not root", user)
	}
	if len(entry) == 0 || entry[0] != copyDst || filepath.Base(copyDst) != "sockbench" {
		t.Errorf("ENTRYPOINT %q; want [%q] (the binary COPY --from puts there)", entry, copyDst)
	}

	// The build stage builds copySrc with the Makefile's cross-build
	// command, given VERSION and COMMIT as build arguments.
	mk := readRepoFile(t, "Makefile")
	vars := makeVars(mk)
	if vars["CROSS"] == "" {
		t.Fatal("Makefile: no CROSS")
	}
	want, err := shellWords(expandMake(vars["CROSS"], vars, 0))
	if err != nil {
		t.Fatal(err)
	}
	args := map[string]bool{}
	var buildCmd []string
	for _, in := range build.instrs {
		switch in.cmd {
		case "ARG":
			name, _, _ := strings.Cut(in.args, "=")
			args[name] = true
		case "RUN":
			if !strings.Contains(in.args, "go build") {
				continue
			}
			if buildCmd != nil {
				t.Errorf("Dockerfile:%d: a second go build", in.line)
			}
			if buildCmd, err = shellWords(makeRef.ReplaceAllString(in.args, "$$$1")); err != nil {
				t.Fatalf("Dockerfile:%d: %v", in.line, err)
			}
			for _, a := range []string{"VERSION", "COMMIT"} {
				if !args[a] {
					t.Errorf("Dockerfile:%d: the build uses $%s but the stage declares no ARG %s before it", in.line, a, a)
				}
			}
		}
	}
	if buildCmd == nil {
		t.Fatalf("stage %q runs no go build", build.name)
	}
	if len(buildCmd) < len(want) || !slices.Equal(buildCmd[:len(want)], want) {
		t.Errorf("the Dockerfile builds with\n\t%q\nthe Makefile's CROSS is\n\t%q", buildCmd, want)
	}
	if i := slices.Index(buildCmd, "-o"); i < 0 || i+1 >= len(buildCmd) || buildCmd[i+1] != copySrc {
		t.Errorf("the build command %q does not write %s, which the final stage copies", buildCmd, copySrc)
	}
	if buildCmd[len(buildCmd)-1] != "./cmd/sockbench" {
		t.Errorf("the build command %q does not build ./cmd/sockbench", buildCmd)
	}

	// make docker hands the version and commit in, since the context has
	// no .git to read them from.
	i := strings.Index(mk, "\ndocker:")
	if i < 0 {
		t.Fatal("Makefile: no docker target")
	}
	recipe := mk[i:]
	for _, a := range []string{"--build-arg VERSION=$(VERSION)", "--build-arg COMMIT=$(COMMIT)"} {
		if !strings.Contains(recipe, a) {
			t.Errorf("make docker does not pass %s", a)
		}
	}
	var ignored []string
	for _, l := range strings.Split(readRepoFile(t, ".dockerignore"), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			ignored = append(ignored, l)
		}
	}
	for _, p := range []string{".git", "bin", "dist"} {
		if !slices.Contains(ignored, p) {
			t.Errorf(".dockerignore does not leave out %s", p)
		}
	}
}

func TestShellWords(t *testing.T) {
	got, err := shellWords(`CGO_ENABLED=0 go build -ldflags '-s -w' -o "a b" x`)
	want := []string{"CGO_ENABLED=0", "go", "build", "-ldflags", "-s -w", "-o", "a b", "x"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("got %q, %v; want %q", got, err, want)
	}
	if _, err := shellWords(`a 'b`); err == nil {
		t.Error("an unterminated quote is not an error")
	}
}
