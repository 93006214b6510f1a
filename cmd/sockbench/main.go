// Command sockbench serves, loads, benchmarks and compares server
// concurrency models. See `sockbench --help`.
package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sockbench/sockbench/models"
)

// Exit statuses shared by every subcommand.
const (
	exitOK      = 0
	exitFailure = 1 // the run failed, or compare found a regression
	exitUsage   = 2 // bad flags, arguments or addresses
)

// usageError marks an error as the user's input being wrong (exit 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// usagef returns a usageError with a formatted message.
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// exitError carries a specific exit status with an already-printed message.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

// version and commit are set at build time (-ldflags "-X main.version=...
// -X main.commit=...") by make pi and make release; they are recorded in
// results as suite_version and commit. commit matters where the binary
// runs outside its checkout (a Pi) and carries no VCS stamp.
var (
	version = "dev"
	commit  = ""
)

var rootCmd = &cobra.Command{
	Use:   "sockbench",
	Short: "Benchmark server concurrency models: threaded, event loop, prefork, and the machine's limit (bare)",
	Long: `sockbench runs the same echo/uppercase server written three ways (a goroutine
per connection, epoll event loops, and a pool of worker processes), and a
fourth that is the machine's limit (one readiness loop on raw sockets), drives
each with one load generator over TCP, UDP and Unix sockets, and writes results
you can compare, plot and gate CI on.`,
	SilenceUsage:  true,
	SilenceErrors: true,
	Version:       version,
}

func main() {
	models.MaybeRunChild()
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	rootCmd.SetArgs(args)
	rootCmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%s (see '%s --help')", flagErrText(err), c.CommandPath())}
	})
	err := rootCmd.Execute()
	if err == nil {
		return exitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "sockbench:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "sockbench:", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return exitUsage
	}
	return exitFailure
}

// flagErrText rewords the parser's error for a flag value that is not a
// number or a duration ('invalid argument "abc" for "--workers" flag:
// strconv.ParseInt: parsing "abc": invalid syntax') as what the flag
// wants, keeping the part that names the flag and the value.
func flagErrText(err error) string {
	msg := err.Error()
	cause := errors.Unwrap(err)
	if cause == nil || !strings.HasPrefix(msg, "invalid argument ") {
		return msg
	}
	head := strings.TrimSuffix(msg, ": "+cause.Error())
	if head == msg {
		return msg
	}
	var ne *strconv.NumError
	switch {
	case errors.As(cause, &ne) && errors.Is(ne.Err, strconv.ErrRange):
		return head + ": out of range"
	case errors.As(cause, &ne) && ne.Func == "ParseFloat":
		return head + ": want a number"
	case errors.As(cause, &ne) && ne.Func == "ParseBool":
		return head + ": want true or false"
	case errors.As(cause, &ne):
		return head + ": want a whole number"
	case strings.HasPrefix(cause.Error(), "time: "):
		return head + ": want a duration with a unit, such as 500us, 10ms or 2s"
	}
	return msg
}

// argsError wraps a cobra.PositionalArgs check so a wrong argument count
// reads as what the command needs, with where to look.
func argsError(check cobra.PositionalArgs, want string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usagef("%s needs %s, got %d argument(s) (see '%s --help')", cmd.Name(), want, len(args), cmd.CommandPath())
		}
		return nil
	}
}

// isCobraUsage recognises cobra's own argument errors (unknown command,
// wrong number of args), which it does not type.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "accepts ", "requires ", "unknown flag", "unknown shorthand", "invalid argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
